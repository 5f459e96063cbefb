"""task = synthesize through a real deployment on 127.0.0.1: `medfed server start`, three
`medfed client start` hospital daemons (heart-disease sites cleveland, hungary, va, each its own
OS process, site.toml, state folder and budget) and `medfed server run`, SecAgg+ on.

What it shows: the deployed server writes synthetic.csv + datacard.json from the final generator
(the schema is the built-in dataset's public one: no site's rows reach the server); each site that
took part has the run's epsilon in its own ledger and audit log; and the site decides: va's
site.toml says `allow-synthesis = false`, so va refuses the run with its reason, spends nothing,
and its audit log records the refusal. Three sites because Flower's SecAgg+ needs three shares
(and each site's min-cohort is 3): all three are sampled (wait-for-sites), va's masked update
carries weight 0, and the two that trained make the quorum (min-sites = 2). No TLS here
(`insecure`): TLS and node authentication are the subject of tests/test_multiprocess_federation.py;
this test is about the synthesis run.

Every process is started through tests/procs.py (own process group, a hard lifetime, stopped by
PID); the test waits on log lines and on `medfed server run` exiting, never on sleeps.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from client.daemon.supervisor import free_port
from client.privacy.audit import AuditLog
from client.privacy.ledger import PrivacyLedger
from common.ops.supervise import FLOWER_ENV_DEFAULTS
from tests.procs import ProcessGroup, run_command, wait_for_log

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess, pytest.mark.timeout(1800)]

MEDFED = [sys.executable, "-m", "simulations.cli"]
SITES = {"cleveland": "true", "hungary": "true", "va": "false"}  # site -> allow-synthesis
EPSILON = 4.0  # every site's own budget (the run asks for more: the sites' budget wins)
CONNECTED = r"connected to \S+ as node \d+"
RUN = "synth-a"


def _site_toml(root: Path, name: str, port: int, allow: str) -> Path:
    path = root / f"{name}.toml"
    path.write_text(
        f'[site]\nname = "{name}"\nserver = "127.0.0.1:{port}"\nstate-dir = "sites/{name}"\ndevice = "cpu"\n'
        "insecure = true\nmax-wait-time = 10\n"
        f'[data]\ndataset = "heart-disease"\nsite = "{name}"\n'
        f"[privacy]\nepsilon = {EPSILON}\ndelta = 1e-4\nmax-grad-norm = 1.0\nallow-synthesis = {allow}\n"
    )
    return path


def _server_toml(root: Path, port: int) -> Path:
    path = root / "server.toml"
    path.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\nstate-dir = "server-state"\ninsecure = true\n'
        "[run]\n"
        'task = "synthesize"\ndataset = "heart-disease"\npartition = "natural"\nnum-rounds = 1\nlocal-epochs = 1\n'
        "batch-size = 32\nsynth-rows = 60\nepsilon = 8.0\n"
        "secagg = true\nsecagg-num-shares = 3\nsecagg-threshold = 2\nmin-sites = 2\nwait-for-sites = 3\n"
        "round-timeout = 900.0\n"
    )
    return path


def test_a_deployed_synthesis_run_writes_the_table_and_each_site_accounts_or_refuses(tmp_path: Path,
                                                                                     data_dir: Path) -> None:
    root = tmp_path
    port = free_port()
    env = dict(os.environ, **FLOWER_ENV_DEFAULTS, MEDFED_DATA_DIR=str(data_dir))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server_toml = _server_toml(root, port)
    with ProcessGroup(root / "logs", default_lifetime=1700) as group:
        server = group.start([*MEDFED, "server", "start", "--config", str(server_toml)],
                             name="server", env=env, cwd=root, stop_last=True)
        wait_for_log(server.log_path, r"server ready on", timeout=240, proc=server)
        daemons = {
            site: group.start([*MEDFED, "client", "start", "--site-config", str(_site_toml(root, site, port, allow))],
                              name=site, env=env, cwd=root)
            for site, allow in SITES.items()
        }
        for proc in daemons.values():
            wait_for_log(proc.log_path, CONNECTED, timeout=300, proc=proc)
        # Generous limits (a loaded 2-core machine takes minutes per SecAgg+ stage); nothing waits on them.
        argv = [*MEDFED, "server", "run", "--config", str(server_toml), "--name", RUN, "--timeout", "1200"]
        done = run_command(argv, env=env, cwd=root, timeout=1300)
        assert done.returncode == 0, done.stdout + done.stderr + group.logs()
    out = root / "server-state" / "runs" / RUN
    assert "synthetic.csv" in done.stdout and "datacard.json" in done.stdout  # the operator is told where

    card = json.loads((out / "datacard.json").read_text())
    table = pd.read_csv(out / "synthetic.csv")
    assert len(table) == card["rows"] == 60 and card["model"]["name"] == "tabular-cgan"
    assert list(table.columns) == [c["name"] for c in card["columns"]] + [card["label_column"]]
    privacy = json.loads((out / "privacy.json").read_text())
    secagg = privacy["secure_aggregation"]
    assert secagg["protocol"].startswith("SecAgg+") and secagg["num_shares"] == 3
    assert card["secure_aggregation"] == secagg
    assert set(card["privacy"]["per_site"]) == {"cleveland", "hungary", "va"}
    assert card["source"]["sites"] == ["cleveland", "hungary"]  # switzerland never connected, va refused
    assert privacy["sites"]["va"]["status"] == "refused by site policy"

    for site, allow in SITES.items():
        state = root / "sites" / site
        log = AuditLog(state / "audit.jsonl")
        assert log.verify().ok
        records = log.records()
        ledger_path = state / "privacy-ledger.json"
        if allow == "true":
            ledger = PrivacyLedger(ledger_path)
            spent = ledger.entry(RUN).spent
            assert 0 < spent <= EPSILON + 1e-6  # the site's budget, not the run's 8.0
            assert card["privacy"]["per_site"][site]["epsilon"] == pytest.approx(spent)
            trained = [r for r in records if r["decision"] == "trained"]
            assert len(trained) == 1 and trained[0]["run"] == RUN
            assert trained[0]["epsilon_run_before"] == 0.0 and trained[0]["epsilon_run_after"] == pytest.approx(spent)
        else:
            refused = [r for r in records if r["decision"] == "refused"]
            assert refused and all("allow-synthesis = false" in r["reason"] for r in refused)
            assert not any(r["decision"] == "trained" for r in records)
            assert not ledger_path.exists() or PrivacyLedger(ledger_path).entry(RUN) is None
