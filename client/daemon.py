"""`medfed client start`: the hospital daemon around one Flower SuperNode.

Order matters: the configuration and the key (site_config.py), then the *data*, are checked
before anything connects, so a hospital learns about a bad export at its own console and
not as a failed round on the server. Then the SuperNode runs under supervision:

  * its output is teed to `state-dir/logs/client.log` and stdout (journald);
  * an exit because the server is away (Flower gives up after `max-wait-time`) is followed by
    a restart with jittered exponential backoff (2 s doubling up to 60 s, back to 2 s after a
    successful connection), every attempt logged;
  * an exit that a restart cannot fix ends the daemon with a documented exit code: the server
    refused the node key or the TLS certificate does not verify (7), a local port is taken (2);
  * SIGTERM/SIGINT are forwarded; the daemon waits for the SuperNode, removes its pid file and
    exits 0.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from client.site_config import SiteConfig
from common.errors import ConfigError, DataError, MedfedError, SecurityError
from common.supervise import Child, LogSink, StopFlag, flower_bin, flower_env, pid_alive

MIN_BACKOFF_S = 2.0
MAX_BACKOFF_S = 60.0
CONNECTED_RE = re.compile(r"SuperNode ID: (\d+)")
LOG_PREFIX = "medfed-client"


# --------------------------------------------------------------------------- data


def validate_data(config: SiteConfig) -> tuple[SiteConfig, str]:
    """Load the site's data exactly as its ClientApp will and run the dataset checks.

    Returns the config with the data format resolved, and a one-line summary."""
    from client.private_trainer import MIN_PRIVATE_EXAMPLES
    from common.datasets.check import check_dataset, site_problems

    if config.data_path is not None:
        from common.datasets.hospital import infer_format, load_hospital

        fmt = config.data_format or infer_format(config.data_path)
        ds = load_hospital(config.data_path, fmt, site_name=config.name)
        site = next(iter(ds.sites.values()))
        problems = check_dataset(ds)
        config = dataclasses.replace(config, data_format=fmt)
        where = f"{config.data_path} ({fmt})"
    else:
        from common.config import DataConfig
        from common.datasets.federated import load_federated

        # What client/site.py loads for `dataset` + `dataset-site`: the dataset's natural sites.
        ds = load_federated(DataConfig(dataset=config.dataset, partition="natural"))
        site = ds.site(config.dataset_site)
        problems = site_problems(ds, config.dataset_site)
        where = f"built-in {config.dataset}, site {config.dataset_site}"
    if problems:
        raise DataError(
            f"The data of site {config.name} ({where}) failed the checks:\n  - " + "\n  - ".join(problems),
            "fix the data (see `medfed data check`), then start the client again.",
        )
    if len(site.train) < MIN_PRIVATE_EXAMPLES:
        raise DataError(
            f"Site {config.name} has {len(site.train)} training examples ({where}); DP-SGD needs at least "
            f"{MIN_PRIVATE_EXAMPLES}.",
            "add data, or leave this site out of the federation.",
        )
    counts = " ".join(str(c) for c in site.train.class_counts(ds.num_classes))
    return config, f"{where}: {len(site.train)} training rows (classes {counts}), {len(site.test)} test rows"


# --------------------------------------------------------------------------- pid file


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def daemon_alive(pid: int) -> bool:
    """Is `pid` a live `medfed client start`? (The cmdline check guards against PID reuse.)"""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"client" in args and b"start" in args


def acquire_pid_file(path: Path) -> None:
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and daemon_alive(pid):
        raise ConfigError(
            f"A medfed client for this state-dir is already running (pid {pid}, {path}).",
            "stop it first (systemctl stop medfed-client, or kill that pid), or use another state-dir.",
        )
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def release_pid_file(path: Path) -> None:
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- SuperNode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_config_text(values: dict) -> str:
    """`--node-config` text: TOML values (`k="v" n=3 flag=true`), strings always quoted."""
    import json

    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def supernode_argv(config: SiteConfig, runtime_port: int) -> list[str]:
    argv = [flower_bin("flower-supernode"), "--superlink", config.server]
    if config.insecure:
        argv.append("--insecure")
    else:
        assert config.ca_cert is not None and config.private_key is not None
        argv += ["--root-certificates", str(config.ca_cert.resolve()),
                 "--auth-supernode-private-key", str(config.private_key.resolve())]
    argv += ["--node-config", node_config_text(config.node_config()),
             "--host", "127.0.0.1", "--port", str(runtime_port),
             "--max-wait-time", f"{config.max_wait_time:g}"]  # fmt: skip
    return argv


@dataclass(frozen=True)
class ExitReason:
    text: str
    fatal: MedfedError | None = None


def classify_exit(code: int | None, output: str, config: SiteConfig) -> ExitReason:
    """Why did the SuperNode stop, and is a restart worth trying? (Flower 1.41 messages.)"""
    if "[code: 2004]" in output or "Failed to activate SuperNode" in output:
        return ExitReason("the server refused this site's node key", SecurityError(
            f"The server refused site {config.name}'s node key ({config.private_key}): it is not registered there "
            "(Flower: Failed to activate SuperNode).",
            "send this site's .pub file to the operator, who records it with `medfed pki node --public-key` and "
            "restarts the server. A key that was unregistered (revoked) can never be registered again: make a new one.",
        ))
    if "[code: 2001]" in output:
        return ExitReason("the server requires node authentication", SecurityError(
            f"The server at {config.server} requires node authentication, which insecure mode cannot do.",
            "remove --insecure / insecure = true and configure [tls] ca-cert and [identity] private-key.",
        ))
    if "CERTIFICATE_VERIFY_FAILED" in output or "SSL/TLS handshake error" in output or "hostname mismatch" in output:
        return ExitReason("the server's TLS certificate does not verify", SecurityError(
            f"The TLS certificate of {config.server} does not verify against [tls] ca-cert {config.ca_cert}.",
            "ask the operator for the consortium's ca.pem, and check that the host in [site] server is one of the "
            "names in the server certificate (`medfed pki list`).",
        ))
    if "address already in use" in output.lower():
        return ExitReason("the local Runtime API port is taken", ConfigError(
            f"[site] runtime-port {config.runtime_port} is already in use on this machine.",
            "set runtime-port = 0 (pick a free port) or another free port in site.toml.",
        ))
    if code == 0:
        return ExitReason("the SuperNode stopped by itself (the server shut down or unregistered this node)")
    return ExitReason(f"the server is unreachable ({_detail(output) or f'exit code {code}'})")


def _detail(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "Failed to initialize the connection" in line and i + 1 < len(lines):
            return lines[i + 1]
    errors = [line for line in lines if line.startswith("ERROR")]
    return errors[-1] if errors else ""


def backoff_delay(failures: int) -> float:
    """2, 4, 8, ... up to 60 s, +-20 % jitter so restarted sites do not reconnect in lockstep."""
    base = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** max(0, failures - 1))
    return min(MAX_BACKOFF_S, max(MIN_BACKOFF_S, base * random.uniform(0.8, 1.2)))


class Supervisor:
    def __init__(self, config: SiteConfig, sink: LogSink, stop: StopFlag) -> None:
        self.config = config
        self.sink = sink
        self.stop = stop
        self.env = flower_env(config.flwr_home)

    def run(self) -> int:
        attempt, failures = 0, 0
        while not self.stop.is_set:
            attempt += 1
            connected = threading.Event()

            def on_line(line: str) -> None:
                if match := CONNECTED_RE.search(line):
                    connected.set()
                    self.sink.say(f"connected to {self.config.server} as node {match.group(1)}")

            port = self.config.runtime_port or free_port()
            argv = supernode_argv(self.config, port)
            self.sink.say(f"starting SuperNode (attempt {attempt}) for site {self.config.name} -> {self.config.server}")
            child = Child(argv, sink=self.sink, env=self.env, cwd=self.config.state_dir, on_line=on_line)
            while child.running() and not self.stop.wait(0.5):
                pass
            if self.stop.is_set:
                self.sink.say(f"received {self.stop.signal_name or 'a stop request'}: stopping the SuperNode.")
                code = child.stop(grace=30.0)
                self.sink.say(f"stopped (SuperNode exit code {code}).")
                return 0
            code = child.wait(10)
            reason = classify_exit(code, child.tail(60), self.config)
            if reason.fatal is not None:
                self.sink.say(f"SuperNode exited with code {code}: {reason.text}; not restarting.")
                raise reason.fatal
            failures = 1 if connected.is_set() else failures + 1
            delay = backoff_delay(failures)
            self.sink.say(f"SuperNode exited with code {code}: {reason.text}. "
                          f"Reconnect attempt {attempt + 1} in {delay:.1f} s.")
            self.stop.wait(delay)
        self.sink.say(f"received {self.stop.signal_name or 'a stop request'}: stopped.")
        return 0


def run_daemon(config: SiteConfig, *, echo: bool = True) -> int:
    """Everything `medfed client start` does after the config loaded; returns the exit status."""
    for folder in (config.state_dir, config.log_file.parent, config.flwr_home):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise ConfigError(f"[site] state-dir: cannot create {folder}: {err}.",
                              f"create it for the user that runs medfed, or change state-dir in {config.config_path}.") from None
    stop = StopFlag()
    stop.install()
    sink = LogSink(config.log_file, echo=echo, prefix=LOG_PREFIX)
    acquire_pid_file(config.pid_file)
    try:
        for warning in config.warnings:
            sink.say(f"warning: {warning}")
        sink.say(f"site {config.name}: checking its data before connecting ...")
        config, summary = validate_data(config)
        sink.say(f"data ok: {summary}")
        budget = f"epsilon {config.epsilon:g}, delta {config.delta:g}"
        if config.max_grad_norm is not None:
            budget += f", max-grad-norm {config.max_grad_norm:g}"
        sink.say(f"privacy budget per run: {budget} (enforced at this site whatever a run asks); "
                 f"ledger {config.ledger_path}; secure aggregation {'required' if config.require_secagg else 'optional'}")
        return Supervisor(config, sink, stop).run()
    except MedfedError as err:
        sink.say(f"error: {err.message}")
        raise
    finally:
        release_pid_file(config.pid_file)
        sink.close()
