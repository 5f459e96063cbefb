"""Deployed Flower starts a new ClientApp process for every message; three of SecAgg+'s five
messages per round never train. Loading the app must therefore stay cheap: no torch, no Opacus."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_loading_the_client_app_does_not_import_torch_or_opacus() -> None:
    code = (
        "import sys, client.client_app as a; "
        "assert a.app is not None; "
        "print(sorted(m for m in ('torch', 'opacus', 'client.flower_client') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"heavy modules loaded with the ClientApp: {res.stdout}"
