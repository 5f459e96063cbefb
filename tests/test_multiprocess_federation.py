"""A real deployment on 127.0.0.1: `medfed server start` (TLS + node authentication) and three
`medfed client start` hospital daemons (heart-disease sites cleveland, hungary, va), each a
separate OS process with its own site.toml, key, state folder and privacy budget.

One module-scoped federation serves every test (starting it costs ~20-60 s). Every process is
started through tests/procs.py: own process group, a hard lifetime, stopped by PID (escaped
SuperExec/ServerApp descendants included) even when a test fails; the fixture's teardown
checks that nothing survived.

The tests run in file order against the same federation: who may join; a private, secure run
and what it leaves; then the faults, injected by killing real OS processes (SIGKILL): hospitals
dying in the middle of SecAgg+ rounds and rejoining, and the whole server dying mid-run and
the run resuming after a restart.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.fault_injection import PAUSE_ROUNDS_ENV, PAUSE_RUN_ENV, PAUSE_SECONDS_ENV, marker_path
from client.privacy.ledger import PrivacyLedger
from client.daemon.supervisor import free_port
from common.ops import pki
from common.ops.supervise import FLOWER_ENV_DEFAULTS, descendants, flower_env, proc_stat
from tests.procs import (
    ManagedProcess,
    ProcessGroup,
    list_supernodes,
    run_command,
    start_supernode,
    wait_for_log,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess, pytest.mark.timeout(1500)]

MEDFED = [sys.executable, "-m", "simulations.cli"]
LIFETIME_S = 3600.0  # hard deadline for every long-lived process of the module (~20 min on 2 idle
# cores; it shares them with the rest of the suite, and a loaded machine doubles that)
SITES = {"cleveland": 5.0, "hungary": 4.0, "va": 6.0}  # each hospital's own epsilon budget per run
# ... and over its lifetime (every run on its data composed with RDP): the four private runs below
# compose to about 8.7 / 6.9 / 11.8, so one more run name brings no fresh budget.
TOTALS = {"cleveland": 10.0, "hungary": 8.0, "va": 12.5}
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
        return flower_env(self.server_state / "flwr-home", base=self.env)

    def medfed(self, *args: str, timeout: float):
        return run_command([*MEDFED, *args], env=self.env, cwd=self.root, timeout=timeout)

    def start_daemon(self, name: str, site_toml: Path, *extra: str, env: dict[str, str] | None = None) -> ManagedProcess:
        argv = [*MEDFED, "client", "start", "--site-config", str(site_toml), *extra]
        return self.group.start(argv, name=name, env={**self.env, **(env or {})}, cwd=self.root, lifetime=LIFETIME_S)

    def restart_sites(self, envs: dict[str, dict[str, str] | None], label: str) -> None:
        """Start these sites' daemons again (the previous ones must be gone), all at once, and wait
        until each is connected. A SuperNode killed without deactivating keeps its node id "online"
        for two missed 30 s heartbeats; until then the SuperLink refuses the restarted one and the
        daemon retries with backoff, so this can take a minute."""
        for site, env in envs.items():
            self.daemons[site] = self.start_daemon(f"{site}-{label}", self.root / f"{site}.toml", env=env)
        for site in envs:
            wait_for_log(self.daemons[site].log_path, CONNECTED, timeout=300, proc=self.daemons[site])

    def start_server(self, label: str) -> ManagedProcess:
        proc = self.group.start([*MEDFED, "server", "start", "--config", str(self.server_toml)],
                                name=label, env=self.env, cwd=self.root, lifetime=LIFETIME_S, stop_last=True)
        self.server = proc
        wait_for_log(proc.log_path, r"server ready on", timeout=240, proc=proc)
        return proc

    def submit_run(self, name: str, label: str, *run_config: str) -> ManagedProcess:
        """`medfed server run` in the background (the operator's terminal), following the run."""
        argv = [*MEDFED, "server", "run", "--config", str(self.server_toml), "--name", name, "--timeout", "900"]
        if run_config:
            argv += ["--run-config", " ".join(run_config)]
        return self.group.start(argv, name=label, env=self.env, cwd=self.root, lifetime=1000)

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
        f"[privacy]\nepsilon = {budget}\ntotal-epsilon = {TOTALS.get(name, budget)}\ndelta = 1e-4\nmax-grad-norm = 1.0\n"
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
    env = dict(os.environ, **FLOWER_ENV_DEFAULTS, MEDFED_DATA_DIR=str(data_dir))
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
        tree = {d for p in group.processes if p.is_running() for d in descendants(p.pid)}
        group.stop_all(grace=30)
    survivors = [pid for pid, start in tree if (proc_stat(pid) or (0, 0, -1))[2] == start]
    assert not survivors, f"processes left running after the federation stopped: {survivors}"


def _trained(record: dict) -> set[str]:
    """The sites that trained in a recorded round (on examples: no training loss leaves a private site)."""
    return {s for s, m in record.get("sites", {}).items() if m.get("num_train_examples", 0) > 0}


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
        federation.group, superlink_port=federation.port, env=flower_env(federation.root / "home-raw", base=federation.env),
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
    assert "the server answers in TLS" in log and "connected to" not in log
    assert plain_daemon.stop(grace=30) == 0  # SIGTERM: clean stop, pid file removed
    assert not (federation.site_state("plain") / "medfed-client.pid").exists()
    assert _online(federation) == federation.registered_ids()


# --------------------------------------------------------------------------- a private, secure run


def untrained_federated_auc(data_dir: Path, sites: list[str], seed: int = 0) -> float:
    """What round 0 measures when there is no central test set: the untrained global model
    (built exactly as server/run_setup.py does) evaluated on each site's own test split,
    example-weighted as the server aggregates federated metrics."""
    import torch

    from common.config import DataConfig
    from common.datasets.contract import normalise_with_site_stats
    from common.datasets.federated import load_federated
    from common.evaluation import evaluate_model
    from common.models import build_model, default_model_for

    ds = load_federated(DataConfig(dataset="heart-disease", partition="natural"), data_dir)
    torch.manual_seed(seed)
    model = build_model(default_model_for(ds.modality), ds.input_shape, ds.num_classes)
    total = weighted = 0.0
    for name in sites:
        site = normalise_with_site_stats(ds.site(name), ds.modality)
        _, metrics, _ = evaluate_model(model, site.test, device=torch.device("cpu"))
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
        trained = _trained(record)
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
    assert not _trained(round1)
    for site in SITES:
        assert privacy["sites"][site]["status"] == "budget exhausted"
        assert privacy["sites"][site]["epsilon"] == {}
        assert any(e.startswith(f"site {site} refused to train") for e in round1["events"])
        after = federation.ledger(site)[RUN_NAME]
        assert after["spent"] == before[site][RUN_NAME]["spent"]  # not one more step was accounted
        assert after["rounds"] == before[site][RUN_NAME]["rounds"]
        assert after["status"] == "exhausted"


# --------------------------------------------------------------------------- the site, not the server, decides

POLICY_RUN = "heart-no-dp"
COHORT_RUN = "heart-cohort"


def _audit(federation: Federation, site: str) -> list[dict]:
    from client.privacy.audit import AuditLog

    return AuditLog(federation.site_state(site) / "audit.jsonl").records()


def test_a_run_without_dp_is_refused_by_every_site_and_the_operator_is_told(federation: Federation) -> None:
    """The server asks for privacy-mode none; every site's policy allows only sample-dp, so none
    trains, the site's own reason reaches `medfed server run`'s output and the run's records, and
    no ledger moves."""
    before = {site: federation.ledger(site) for site in SITES}
    res = federation.medfed("server", "run", "--config", str(federation.server_toml), "--name", POLICY_RUN,
                            "--run-config", "num-rounds=1 privacy-mode='none'", "--timeout", "900", timeout=1000)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output + federation.group.logs()
    assert "does not allow privacy-mode='none'" in output and "refused to train (site policy)" in output
    out = federation.server_state / "runs" / POLICY_RUN
    privacy = json.loads((out / "privacy.json").read_text())
    round1 = json.loads((out / "metrics.json").read_text())["rounds"][1]
    assert not _trained(round1)
    for site in SITES:
        assert privacy["sites"][site]["status"] == "refused by site policy"
        assert any(e.startswith(f"site {site} refused to train: This site's policy does not allow") for e in round1["events"])
        assert federation.ledger(site) == before[site], "a refused run spends nothing"
        refused = [r for r in _audit(federation, site) if r["run"] == POLICY_RUN and r["decision"] == "refused"]
        assert refused and "privacy-mode='none'" in refused[0]["reason"]
        assert all("train_loss" not in str(r["released"]) for r in _audit(federation, site))


def test_a_secagg_round_below_the_sites_min_cohort_is_refused(federation: Federation) -> None:
    """With one hospital offline, the server runs SecAgg+ over 2 sites (min-sites=2): each would
    learn the other's update from the sum, so both refuse at the SecAgg+ setup (min-cohort 3),
    before any training, and say so in their audit logs."""
    assert federation.daemons["va"].stop(grace=30) == 0  # a clean stop: the server drops it at once
    before = {site: federation.ledger(site) for site in SITES}
    res = federation.medfed("server", "run", "--config", str(federation.server_toml), "--name", COHORT_RUN,
                            "--run-config", "num-rounds=1 min-sites=2", "--timeout", "900", timeout=1000)
    assert res.returncode == 0, res.stdout + res.stderr + federation.group.logs()
    round1 = json.loads((federation.server_state / "runs" / COHORT_RUN / "metrics.json").read_text())["rounds"][1]
    assert not _trained(round1) and any("no aggregate" in e for e in round1["events"]), round1
    for site in ("cleveland", "hungary"):
        assert federation.ledger(site) == before[site], "refused at setup: not one step was accounted"
        refused = [r for r in _audit(federation, site) if r["run"] == COHORT_RUN and r["decision"] == "refused"]
        assert refused and refused[0]["message_type"] == "train:setup" and "min-cohort=3" in refused[0]["reason"]
        assert not [r for r in _audit(federation, site) if r["run"] == COHORT_RUN and r["decision"] == "trained"]
    federation.restart_sites({"va": None}, "back-after-cohort")


# --------------------------------------------------------------------------- hospitals die mid-round

FAULT_RUN = "heart-faults"
# site -> the rounds at which its ClientApp stops after training (spend recorded, update not sent)
# so that the test can SIGKILL the hospital's whole process tree there.
#   round 1: hungary dies -> 2 survivors >= SecAgg+ threshold 2: the round completes with them;
#   round 2: hungary and va die -> 1 survivor < 2: no aggregate, recorded; round 3 runs with all.
PAUSE_AT = {"hungary": (1, 2), "va": (2,)}


def _armed(site: str) -> dict[str, str]:
    return {PAUSE_ROUNDS_ENV: ",".join(map(str, PAUSE_AT[site])), PAUSE_RUN_ENV: FAULT_RUN, PAUSE_SECONDS_ENV: "300"}


@dataclass
class FaultedRun:
    runner: ManagedProcess
    rc: int
    at_pause: dict[tuple[str, int], dict]  # the site's ledger entry while its update was held back
    after_kill: dict[tuple[str, int], dict]  # ... and right after its processes were SIGKILLed
    ledgers: dict[str, dict]  # every site's entry when the run finished


@pytest.fixture(scope="module")
def faulted_run(federation: Federation) -> FaultedRun:
    for site in PAUSE_AT:  # replace the two daemons with armed ones
        assert federation.daemons[site].stop(grace=30) == 0
    federation.restart_sites({site: _armed(site) for site in PAUSE_AT}, "armed")
    # min-sites 2: the operator tolerates one hospital missing; wait-for-sites 3: before each round
    # the server waits (up to the round timeout) for a restarting hospital to be back. A killed
    # SuperNode's node id stays "online" until two missed 30 s heartbeats, so a round waits ~60 s
    # for the dead site's reply, and its restarted daemon is let back in only then.
    runner = federation.submit_run(FAULT_RUN, "run-faults", "num-rounds=3", "min-sites=2", "wait-for-sites=3",
                                   "round-timeout=60.0")
    at_pause, after_kill = {}, {}
    for rnd in (1, 2):
        victims = [site for site, rounds in PAUSE_AT.items() if rnd in rounds]
        paused_pid = {}
        for site in victims:
            marker = marker_path(federation.site_state(site), rnd)
            wait_until(marker.exists, f"{site} to pause at {marker}", timeout=600,
                       procs=[runner, federation.daemons[site]])
            paused_pid[site] = int(marker.read_text())
            at_pause[site, rnd] = federation.ledger(site)[FAULT_RUN]
        for site in victims:
            tree = {pid for pid, _ in descendants(federation.daemons[site].pid)}
            assert paused_pid[site] in tree, "the paused ClientApp must belong to the daemon being killed"
            federation.daemons[site].kill()  # daemon, SuperNode, ClientApp: SIGKILL, no clean-up
            assert proc_stat(paused_pid[site]) is None, "the paused ClientApp survived SIGKILL"
            after_kill[site, rnd] = federation.ledger(site)[FAULT_RUN]
        # The hospital's IT restarts the service; it must rejoin on its own (armed again only if
        # the test still needs it to stop at a later round).
        federation.restart_sites(
            {site: _armed(site) if max(PAUSE_AT[site]) > rnd else None for site in victims}, f"restarted-r{rnd}"
        )
    rc = runner.wait(timeout=900)
    ledgers = {site: federation.ledger(site)[FAULT_RUN] for site in SITES}
    return FaultedRun(runner, rc, at_pause, after_kill, ledgers)


def _fault_records(federation: Federation) -> tuple[dict[int, dict], dict]:
    out = federation.server_state / "runs" / FAULT_RUN
    metrics = json.loads((out / "metrics.json").read_text())
    return {r["round"]: r for r in metrics["rounds"]}, json.loads((out / "privacy.json").read_text())


def test_killed_hospital_above_threshold_round_completes_with_survivors(federation: Federation, faulted_run) -> None:
    assert faulted_run.rc == 0, faulted_run.runner.tail(80) + federation.group.logs()
    rounds, _ = _fault_records(federation)
    assert sorted(rounds) == [0, 1, 2, 3]
    assert _trained(rounds[1]) == {"cleveland", "va"}, rounds[1]
    assert rounds[1]["fit"]["sites"] == 2, "round 1 must aggregate exactly the two survivors"
    assert rounds[1]["global"], "round 1 produced a new global model that was evaluated"


def test_killed_hospitals_below_threshold_round_recorded_and_next_round_runs(federation: Federation,
                                                                             faulted_run) -> None:
    assert faulted_run.rc == 0, faulted_run.runner.tail(80)
    rounds, _ = _fault_records(federation)
    assert "fit" not in rounds[2], f"round 2 had 1 survivor below the threshold of 2: {rounds[2]}"
    assert any("no aggregate" in e for e in rounds[2]["events"]), rounds[2]["events"]
    assert rounds[3]["fit"]["sites"] >= 2 and rounds[3]["global"], "round 3 proceeds and aggregates"
    output = faulted_run.runner.log_text()
    assert "round 2/3" in output and "no aggregate" in output and "finished:completed" in output


def test_killed_daemon_rejoins_on_restart(federation: Federation, faulted_run) -> None:
    """hungary, killed in round 1, was back and training in round 2 (where it stopped again at the
    fault point); both sites killed in round 2 are back and train in round 3 (the run waits for
    them before each round: wait-for-sites=3)."""
    rounds, _ = _fault_records(federation)
    assert ("hungary", 2) in faulted_run.at_pause
    assert faulted_run.at_pause["hungary", 2]["rounds"] == 2
    assert _trained(rounds[3]) == set(SITES), rounds[3]
    assert rounds[3]["fit"] == {"sites": 3, "failures": 0}


def test_killed_daemon_never_under_counts_its_privacy_spend(federation: Federation, faulted_run) -> None:
    """The spend of a round is in the ledger before the update could leave: killing the hospital
    between training and sending loses the update, never the accounting."""
    rounds, privacy = _fault_records(federation)
    for (site, rnd), entry in faulted_run.at_pause.items():
        assert entry["spent"] > 0, (site, rnd, entry)
        assert faulted_run.after_kill[site, rnd] == entry, f"{site}'s ledger changed when it was killed"
    assert faulted_run.at_pause["hungary", 2]["spent"] > faulted_run.at_pause["hungary", 1]["spent"]
    for site, budget in SITES.items():
        # Every site trained in rounds 1 and 2 (killed after training, or sent an update that
        # round 2's halted SecAgg+ never unmasked); round 3 counts if it took part.
        trained_rounds = 2 + (site in _trained(rounds[3]))
        killed = {r for s, r in faulted_run.at_pause if s == site}
        sent = {r for r in (1, 3) if site in _trained(rounds[r])}
        final = faulted_run.ledgers[site]
        assert final["rounds"] == trained_rounds, f"{site}: every trained round is charged, sent or not: {final}"
        assert final["spent"] <= budget + 1e-6
        reported = privacy["sites"][site]["epsilon"]
        # What the server reports never exceeds what the site's ledger holds; once a site sends
        # again after being killed, the epsilon it reports includes the rounds the server never saw.
        assert max(reported.values()) <= final["spent"] + 1e-9
        if sent and max(sent) > max(killed, default=0):
            assert reported[str(max(sent))] == pytest.approx(final["spent"])


# --------------------------------------------------------------------------- the server dies mid-run

RESUME_RUN = "heart-resume"


def test_server_killed_mid_run_resumes_from_last_completed_round(federation: Federation) -> None:
    """SIGKILL the whole server (SuperLink, SuperExec, ServerApp) after round 1 of 2 is
    checkpointed: the operator is told, the hospitals keep trying and reconnect to the restarted
    server by themselves, and the same `medfed server run --name` resumes the run."""
    out = federation.server_state / "runs" / RESUME_RUN
    first = federation.submit_run(RESUME_RUN, "run-resume-1", "num-rounds=2")
    checkpoint = out / "checkpoint.json"
    wait_until(lambda: checkpoint.exists() and json.loads(checkpoint.read_text())["round"] >= 1,
               "round 1's checkpoint", timeout=600, procs=[first])
    old = federation.server
    tree = descendants(old.pid)
    federation.server.kill()  # no clean-up, no final outputs
    assert not [pid for pid, start in tree if (proc_stat(pid) or (0, 0, -1))[2] == start]
    killed_at = json.loads(checkpoint.read_text())["round"]
    before = {site: federation.ledger(site)[RESUME_RUN] for site in SITES}
    assert not (out / "report.html").exists() and killed_at == 1

    # The operator's terminal is told, within a bounded time, what happened and what to do.
    assert first.wait(timeout=240) != 0
    told = first.log_text()
    assert "Lost contact with the SuperLink" in told and f"--name {RESUME_RUN}" in told, told[-3000:]
    for proc in federation.daemons.values():  # the hospitals notice and keep trying, with backoff
        wait_for_log(proc.log_path, r"server is unreachable .*Reconnect attempt \d+ in", timeout=240, proc=proc)

    connections = {site: len(re.findall(CONNECTED, proc.log_text())) for site, proc in federation.daemons.items()}
    new = federation.start_server("server-after-crash")  # same database and state folder
    assert new.log_text().count("already registered") == len(SITES)
    # Wait for each daemon to log a *new* connection: right after a restart the SuperLink still
    # lists the old sessions as online for up to a minute, so `flwr supernode list` is no proof.
    wait_until(lambda: all(len(re.findall(CONNECTED, federation.daemons[site].log_text())) > n
                           for site, n in connections.items()),
               "every hospital's new connection", timeout=300, procs=list(federation.daemons.values()), interval=1)
    assert _online(federation) == federation.registered_ids()
    second = federation.submit_run(RESUME_RUN, "run-resume-2", "num-rounds=2")
    assert second.wait(timeout=900) == 0, second.tail(80) + federation.group.logs()
    assert f"resuming the interrupted run in {out}" in second.log_text()

    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2], "every round exactly once"
    resumed = metrics["rounds"][killed_at + 1]
    assert any("resuming from round" in e for e in resumed["events"]), resumed["events"]
    # A site already charged for round 2 when the server died is charged again for the resumed
    # round 2 (the first attempt may have been released) and may then refuse it as over budget;
    # every other site trains in it.
    not_yet_charged = {site for site in SITES if before[site]["rounds"] == killed_at}
    assert not_yet_charged <= _trained(resumed) and resumed["fit"]["sites"] >= 2, resumed
    assert (out / "report.html").exists() and (out / "global_model.pt").exists()
    for site, budget in SITES.items():
        after = federation.ledger(site)[RESUME_RUN]
        assert before[site]["spent"] <= after["spent"] <= budget + 1e-6, (site, before[site], after)
        if site in not_yet_charged:
            assert after["rounds"] == before[site]["rounds"] + 1 and after["spent"] > before[site]["spent"]


# --------------------------------------------------------------------------- a new run name brings no fresh budget

def _dp_accounting_total(ledger_path: Path, delta: float) -> float:
    """The site's lifetime epsilon recomputed with Google's dp-accounting from the ledger's own
    histories (independently of medfed's and Opacus' RDP code)."""
    import dp_accounting

    from client.privacy.ledger import PrivacyLedger

    accountant = dp_accounting.rdp.RdpAccountant()
    for history in PrivacyLedger(ledger_path).histories().values():
        for noise, rate, steps in history:
            accountant.compose(dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise)), steps)
    return accountant.get_epsilon(delta)


def test_new_run_names_bring_no_fresh_budget_and_every_total_stays_within_total_epsilon(federation: Federation) -> None:
    """Three more runs under new names: once a site's composed lifetime epsilon would pass its
    total-epsilon, it refuses before any gradient, whatever the run is called. Every site's
    total, recomputed with dp-accounting from its ledger, stays within its total-epsilon, and
    every site's audit log verifies."""
    refused_lifetime: dict[str, list[str]] = {site: [] for site in SITES}
    for name in ("heart-b1", "heart-b2", "heart-b3"):
        res = federation.medfed("server", "run", "--config", str(federation.server_toml), "--name", name,
                                "--run-config", "num-rounds=1", "--timeout", "900", timeout=1000)
        assert res.returncode == 0, res.stdout + res.stderr + federation.group.logs()
        for site in SITES:
            records = [r for r in _audit(federation, site) if r["run"] == name and r["decision"] == "refused"]
            if any("lifetime epsilon" in r["reason"] for r in records):
                refused_lifetime[site].append(name)
    assert all(refused_lifetime.values()), f"every site must refuse a run once its lifetime budget is spent: {refused_lifetime}"
    for site, total in TOTALS.items():
        ledger_path = federation.site_state(site) / "privacy-ledger.json"
        recomputed = _dp_accounting_total(ledger_path, 1e-4)
        assert 0 < recomputed <= total, f"{site}: composed {recomputed:.3f} over total-epsilon {total}"
        assert len(federation.ledger(site)) >= 4, "the lifetime covers every run on the site's data"
        res = federation.medfed("client", "audit", "--site-config", str(federation.root / f"{site}.toml"), "--verify",
                                timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr

