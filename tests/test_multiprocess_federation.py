"""A real deployment on 127.0.0.1: `medfed server start` (TLS + node authentication) and three
`medfed client start` hospital daemons (heart-disease sites cleveland, hungary, va), each a
separate OS process with its own site.toml, key, state folder and privacy budget.

One module-scoped federation serves every test (starting it costs ~20-60 s). Every process is
started through tests/procs.py: own process group, a hard lifetime, stopped by PID (escaped
SuperExec/ServerApp descendants included) even when a test fails; the fixture's teardown
checks that nothing survived.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.ledger import PrivacyLedger
from common import pki
from tests.procs import (
    FLWR_TEST_ENV,
    ManagedProcess,
    ProcessGroup,
    _descendants,
    _proc_stat,
    flwr_env,
    free_port,
    list_supernodes,
    run_command,
    start_supernode,
    wait_for_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess, pytest.mark.timeout(1500)]

MEDFED = [sys.executable, "-m", "simulations.cli"]
LIFETIME_S = 1800.0  # hard deadline for every long-lived process of the module
SITES = {"cleveland": 5.0, "hungary": 4.0, "va": 6.0}  # each hospital's own epsilon budget
RUN_EPSILON = 8.0  # what the server's run asks for: every site must enforce its own, lower budget
RUN_NAME = "heart-a"
CONNECTED = r"connected to \S+ as node \d+"


@dataclass
class Federation:
    root: Path
    pki: Path
    port: int
    env: dict[str, str]
    group: ProcessGroup
    server: ManagedProcess
    server_toml: Path
    daemons: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def server_state(self) -> Path:
        return self.root / "server-state"

    def site_state(self, site: str) -> Path:
        return self.root / "sites" / site

    def cli_env(self) -> dict[str, str]:
        """Environment for `flwr` calls with the connection `medfed` written by `server start`."""
        return flwr_env(self.server_state / "flwr-home", base=self.env)

    def medfed(self, *args: str, timeout: float):
        return run_command([*MEDFED, *args], env=self.env, cwd=self.root, timeout=timeout)

    def start_daemon(self, name: str, site_toml: Path, *extra: str) -> ManagedProcess:
        argv = [*MEDFED, "client", "start", "--site-config", str(site_toml), *extra]
        return self.group.start(argv, name=name, env=self.env, cwd=self.root, lifetime=LIFETIME_S)

    def registered_ids(self) -> set[str]:
        nodes = json.loads((self.server_state / "nodes.json").read_text())["nodes"]
        return {str(n["node-id"]) for n in nodes.values()}

    def supernodes(self) -> list[dict]:
        return list_supernodes("medfed", env=self.cli_env())

    def ledger(self, site: str) -> dict:
        return PrivacyLedger(self.site_state(site) / "privacy-ledger.json").summary()


def write_site_toml(fed_root: Path, name: str, *, port: int, budget: float, ca: Path, key: Path | None,
                    pub: Path | None, data_site: str | None = None, max_wait: int = 10) -> Path:
    identity = f'[identity]\nprivate-key = "{key}"\npublic-key = "{pub}"\n' if key else ""
    text = (
        f'[site]\nname = "{name}"\nserver = "127.0.0.1:{port}"\nstate-dir = "sites/{name}"\ndevice = "cpu"\n'
        f"max-wait-time = {max_wait}\n"
        f'[data]\ndataset = "heart-disease"\nsite = "{data_site or name}"\n'
        f"[privacy]\nepsilon = {budget}\ndelta = 1e-4\nmax-grad-norm = 1.0\n"
        f'[tls]\nca-cert = "{ca}"\n{identity}'
    )
    path = fed_root / f"{name}.toml"
    path.write_text(text)
    return path


def write_server_toml(root: Path, pki_dir: Path, port: int) -> Path:
    path = root / "server.toml"
    path.write_text(
        f'[server]\naddress = "127.0.0.1:{port}"\nstate-dir = "server-state"\n'
        f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\nserver-cert = "{pki_dir / "server.pem"}"\n'
        f'server-key = "{pki_dir / "server.key"}"\n'
        f'[auth]\nauthorized-nodes = "{pki_dir / "authorized_nodes.json"}"\n'
        "[run]\n"
        'dataset = "heart-disease"\npartition = "natural"\nnum-rounds = 2\nlocal-epochs = 1\n'
        f"privacy-mode = \"sample-dp\"\nepsilon = {RUN_EPSILON}\n"
        "secagg = true\nsecagg-num-shares = 3\nsecagg-threshold = 2\nmin-sites = 3\nround-timeout = 300.0\n"
    )
    return path


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    root = tmp_path_factory.mktemp("federation")
    pki_dir = root / "pki"
    pki.init_ca(pki_dir)
    pki.issue_server_cert(pki_dir, hosts=["127.0.0.1"])
    for site in SITES:
        pki.create_node_identity(pki_dir, site, out=root / "keys" / site)
    pki.create_node_identity(root / "rogue-pki", "rogue")  # never in the server's authorized_nodes.json
    port = free_port()
    env = dict(os.environ, **FLWR_TEST_ENV, MEDFED_DATA_DIR=str(data_dir))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server_toml = write_server_toml(root, pki_dir, port)
    for site, budget in SITES.items():
        keys = root / "keys" / site
        write_site_toml(root, site, port=port, budget=budget, ca=pki_dir / "ca.pem",
                        key=keys / f"{site}.key", pub=keys / f"{site}.pub")

    with ProcessGroup(root / "logs", default_lifetime=LIFETIME_S) as group:
        server = group.start([*MEDFED, "server", "start", "--config", str(server_toml)],
                             name="server", env=env, cwd=root, stop_last=True)
        wait_for_log(server.log_path, r"server ready on", timeout=240, proc=server)
        fed = Federation(root, pki_dir, port, env, group, server, server_toml)
        for site in SITES:
            fed.daemons[site] = fed.start_daemon(site, root / f"{site}.toml")
        for proc in fed.daemons.values():
            wait_for_log(proc.log_path, CONNECTED, timeout=300, proc=proc)
        yield fed
        tree = {d for p in group.processes if p.is_running() for d in _descendants(p.pid)}
        group.stop_all(grace=30)
    survivors = [pid for pid, start in tree if (_proc_stat(pid) or (0, 0, -1))[2] == start]
    assert not survivors, f"processes left running after the federation stopped: {survivors}"


def _online(fed: Federation) -> set[str]:
    return {str(n["node-id"]) for n in fed.supernodes() if n.get("status") == "online"}


# --------------------------------------------------------------------------- who may join


def test_three_hospitals_registered_and_online(federation: Federation) -> None:
    nodes = json.loads((federation.server_state / "nodes.json").read_text())["nodes"]
    assert set(nodes) == set(SITES) and all(n["status"] == "registered" for n in nodes.values())
    assert _online(federation) == federation.registered_ids()
    server_log = federation.server.log_text()
    assert "--enable-supernode-auth" in server_log and "--ssl-certfile" in server_log
    assert (federation.server_state / "logs" / "superlink.log").read_text().count("Uvicorn running on https://") == 1


def test_unregistered_node_key_is_refused(federation: Federation) -> None:
    rogue_keys = federation.root / "rogue-pki"
    toml = write_site_toml(federation.root, "rogue", port=federation.port, budget=5.0,
                           ca=federation.pki / "ca.pem", key=rogue_keys / "rogue.key",
                           pub=rogue_keys / "rogue.pub", data_site="va")
    rogue = federation.start_daemon("rogue", toml)
    assert rogue.wait(timeout=240) == 7, rogue.tail()  # SecurityError: a restart cannot fix it
    log = rogue.log_text()
    assert "Failed to activate SuperNode" in log and "server refused site rogue's node key" in log
    assert "SuperNode ID" not in log and "not restarting" in log
    assert {str(n["node-id"]) for n in federation.supernodes()} == federation.registered_ids()


def test_node_without_the_ca_or_in_plaintext_cannot_connect(federation: Federation) -> None:
    other_ca = pki.init_ca(federation.root / "other-ca")
    va_keys = federation.root / "keys" / "va"
    foreign = write_site_toml(federation.root, "foreign", port=federation.port, budget=5.0, ca=other_ca.cert,
                              key=va_keys / "va.key", pub=va_keys / "va.pub", data_site="va")
    plain = write_site_toml(federation.root, "plain", port=federation.port, budget=5.0, ca=federation.pki / "ca.pem",
                            key=None, pub=None, data_site="va", max_wait=5)
    # A bare SuperNode that trusts only the system CAs, a daemon with another consortium's CA, and
    # a daemon in plaintext: all three at once to keep the test short.
    raw = start_supernode(
        federation.group, superlink_port=federation.port, env=flwr_env(federation.root / "home-raw", base=federation.env),
        name="raw-no-ca", root_cert=None, private_key=federation.root / "rogue-pki" / "rogue.key",
        wait_connected=None, max_wait_time=10, cwd=federation.root, lifetime=300,
    )
    foreign_daemon = federation.start_daemon("foreign", foreign)
    plain_daemon = federation.start_daemon("plain", plain, "--insecure")

    assert raw.wait(timeout=120) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in raw.log_text() and "SuperNode ID" not in raw.log_text()
    assert foreign_daemon.wait(timeout=240) == 7, foreign_daemon.tail()
    assert "does not verify against [tls] ca-cert" in foreign_daemon.log_text()

    wait_for_log(plain_daemon.log_path, r"starting SuperNode \(attempt 2\)", timeout=300, proc=plain_daemon)
    log = plain_daemon.log_text()
    assert "warning: this hospital connects WITHOUT TLS" in log  # printed at every start
    assert "the server probably uses TLS" in log and "connected to" not in log
    assert plain_daemon.stop(grace=30) == 0  # SIGTERM: clean stop, pid file removed
    assert not (federation.site_state("plain") / "medfed-client.pid").exists()
    assert _online(federation) == federation.registered_ids()


# --------------------------------------------------------------------------- a private, secure run


def untrained_federated_auc(data_dir: Path, sites: list[str], seed: int = 0) -> float:
    """What round 0 measures when there is no central test set: the untrained global model
    (built exactly as server/run_setup.py does) evaluated on each site's own test split,
    example-weighted as the server aggregates federated metrics."""
    import torch

    from client.training import evaluate
    from common.config import DataConfig
    from common.datasets.contract import normalise_with_site_stats
    from common.datasets.federated import load_federated
    from common.models import build_model, default_model_for

    ds = load_federated(DataConfig(dataset="heart-disease", partition="natural"), data_dir)
    torch.manual_seed(seed)
    model = build_model(default_model_for(ds.modality), ds.input_shape, ds.num_classes)
    total = weighted = 0.0
    for name in sites:
        site = normalise_with_site_stats(ds.site(name), ds.modality)
        _, metrics, _ = evaluate(model, site.test, device=torch.device("cpu"))
        total += len(site.test)
        weighted += len(site.test) * float(metrics["auc"])
    return weighted / total


@pytest.fixture(scope="module")
def first_run(federation: Federation):
    res = federation.medfed("server", "run", "--config", str(federation.server_toml), "--name", RUN_NAME,
                            "--timeout", "1200", timeout=1300)
    ledgers = {site: federation.ledger(site) for site in SITES}
    return res, ledgers


def test_private_secure_run_completes_and_learns(federation: Federation, first_run, data_dir: Path) -> None:
    res, ledgers = first_run
    output = res.stdout + res.stderr
    assert res.returncode == 0, output + federation.group.logs()
    assert "finished:completed" in output and "round 2/2" in output
    out = federation.server_state / "runs" / RUN_NAME
    for name in ("metrics.json", "privacy.json", "global_model.pt", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    for record in metrics["rounds"][1:]:
        trained = {s for s, m in record["sites"].items() if "train_loss" in m}
        assert trained == set(SITES), f"round {record['round']}: {record}"
        assert record["fit"] == {"sites": 3, "failures": 0}
    baseline = metrics["rounds"][0]["global"].get("auc")
    if baseline is None:  # no central test set for heart-disease: the sites' view of round 0
        baseline = untrained_federated_auc(data_dir, list(SITES))
    final = metrics["final"]["global"]["auc"]
    assert final > baseline + 0.1 and final >= 0.65, f"AUC {baseline:.3f} -> {final:.3f}"

    privacy = json.loads((out / "privacy.json").read_text())
    assert privacy["privacy_mode"] == "sample-dp"
    assert privacy["secure_aggregation"]["num_shares"] == 3
    assert privacy["secure_aggregation"]["reconstruction_threshold"] == 2
    for site, budget in SITES.items():
        entry = privacy["sites"][site]
        eps = [entry["epsilon"][r] for r in ("1", "2")]
        assert 0 < eps[0] < eps[1] <= budget + 1e-6, (site, eps)
        assert entry["budget"] == budget < RUN_EPSILON  # the site's budget, not the run's
        ledger = ledgers[site][RUN_NAME]
        assert ledger["budget"] == budget and ledger["rounds"] == 2
        assert ledger["spent"] == pytest.approx(eps[1]) and ledger["spent"] <= budget + 1e-6


def test_client_status_while_running(federation: Federation, first_run) -> None:
    res = federation.medfed("client", "status", "--site-config", str(federation.root / "hungary.toml"), "--json",
                            timeout=120)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["daemon"]["running"] and status["daemon"]["pid"] == federation.daemons["hungary"].pid
    assert status["connection"]["state"] == "connected"
    assert str(status["connection"]["node_id"]) in federation.registered_ids()
    run = status["ledger"]["runs"][RUN_NAME]
    assert run["budget"] == SITES["hungary"] and 0 < run["spent"] <= run["budget"] + 1e-6
    assert run["left"] == pytest.approx(max(0.0, run["budget"] - run["spent"]))


def test_spent_budget_makes_sites_refuse_a_second_run(federation: Federation, first_run) -> None:
    _, before = first_run
    res = federation.medfed("server", "run", "--config", str(federation.server_toml), "--name", RUN_NAME,
                            "--run-config", "num-rounds=1", "--timeout", "900", timeout=1000)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output + federation.group.logs()
    assert "shares its privacy scope 'heart-a'" in output
    assert "refused to train" in output and "privacy budget exhausted" in output
    out = federation.server_state / "runs" / f"{RUN_NAME}-2"
    privacy = json.loads((out / "privacy.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    round1 = metrics["rounds"][1]
    assert not any("train_loss" in m for m in round1["sites"].values())
    for site in SITES:
        assert privacy["sites"][site]["status"] == "budget exhausted"
        assert privacy["sites"][site]["epsilon"] == {}
        assert any(e.startswith(f"site {site} refused to train") for e in round1["events"])
        after = federation.ledger(site)[RUN_NAME]
        assert after["spent"] == before[site][RUN_NAME]["spent"]  # not one more step was accounted
        assert after["rounds"] == before[site][RUN_NAME]["rounds"]
        assert after["status"] == "exhausted"


# --------------------------------------------------------------------------- the server goes away


def test_hospitals_reconnect_after_a_server_restart(federation: Federation) -> None:
    """Stop the server for longer than the sites' max-wait-time: every daemon restarts its
    SuperNode with backoff and is back online once the server (same database) is restarted."""
    old = federation.server
    tree = _descendants(old.pid)  # medfed -> SuperLink -> SuperExec (own session)
    assert old.stop(grace=60) == 0, old.tail()  # SIGTERM is a clean stop
    assert not [pid for pid, start in tree if (_proc_stat(pid) or (0, 0, -1))[2] == start]
    for proc in federation.daemons.values():
        wait_for_log(proc.log_path, r"server is unreachable .*Reconnect attempt \d+ in", timeout=240, proc=proc)

    new = federation.group.start([*MEDFED, "server", "start", "--config", str(federation.server_toml)],
                                 name="server-restarted", env=federation.env, cwd=federation.root,
                                 lifetime=LIFETIME_S, stop_last=True)
    federation.server = new
    wait_for_log(new.log_path, r"server ready on", timeout=240, proc=new)
    assert new.log_text().count("already registered") == len(SITES)
    for proc in federation.daemons.values():
        wait_for_log(proc.log_path, rf"(?s){CONNECTED}.*{CONNECTED}", timeout=240, proc=proc)
    assert _online(federation) == federation.registered_ids()
