"""The `medfed` command: one root app, each sub-command group imported explicitly.

  medfed simulate      a whole federation on this machine (Flower simulation engine)
  medfed report        rebuild a run's report, or compare runs side by side
  medfed synth         a federated, differentially private synthetic table
  medfed data check    validate and summarise a site's data
  medfed pki ...       consortium CA, server certificate, node identities
  medfed server ...    start the SuperLink, submit a federated run   (operator)
  medfed client ...    the hospital daemon and its status            (hospital IT)

Why explicit imports: a sub-app that fails to import must fail the command with its traceback,
not silently vanish from `medfed --help` (each module imports its heavy libraries only inside
its commands, so this stays fast).
"""

from __future__ import annotations

import typer

from simulations.cli.client import client_cli
from simulations.cli.data import data_app
from simulations.cli.pki import pki_app
from simulations.cli.report import report
from simulations.cli.server import server_cli
from simulations.cli.simulate import simulate
from simulations.cli.synth import synth

app = typer.Typer(
    help="medfed: federated, privacy-preserving deep learning for hospitals.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(simulate)
app.command()(report)
app.command()(synth)
app.add_typer(data_app, name="data")
app.add_typer(pki_app, name="pki")
app.add_typer(server_cli, name="server")
app.add_typer(client_cli, name="client")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
