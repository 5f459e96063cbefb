"""`medfed client start`: the hospital daemon around one Flower SuperNode.

Order matters: the configuration and the key (site_config.py), then the *data*, are checked
before anything connects, so a hospital learns about a bad export at its own console and
not as a failed round on the server. Then the SuperNode runs under supervision:

  * its output is teed to `state-dir/logs/client.log` and stdout (journald);
  * an exit because the server is away (Flower gives up after `max-wait-time`) is followed by
    a restart with jittered exponential backoff (2 s doubling up to 60 s, back to 2 s after a
    successful connection), every attempt logged. A SuperNode that loses an *established*
    connection gives up after `max-wait-time` but, in Flower 1.41, does not exit (its Runtime
    API thread keeps the process alive): the daemon notices the "Giving up reconnection" line,
    stops it after a short grace and restarts it the same way;
  * a node the server refuses because it still counts this node's previous session as online
    (after a crash or kill, until two 30 s heartbeats are missed) is retried every ~5 s, so the
    hospital is back the moment the server lets it in. Those refusals are not failures: they
    never grow the backoff, and for `KNOWN_NODE_WINDOW_S` after the last one any other exit is
    retried at the same short pace (`ReconnectPacer`), since the server is about to let us in;
  * an exit that a restart cannot fix ends the daemon with a documented exit code: the TLS
    certificate does not verify (7), a local port is taken (2), the server refuses to activate
    a key that was never activated from this state folder, i.e. is not registered (7);
  * a refusal of a key that *was* activated before is retried: right after a SuperLink restart
    the server still counts the node as online (until its heartbeat window, ~60 s, expires) and
    answers with the same "Failed to activate SuperNode". Only refusals lasting
    `REFUSED_LIMIT_S` (a revoked key) end the daemon (7). Activations are recorded in
    `state-dir/node-identity.json` (key fingerprint, node id);
  * SIGTERM/SIGINT are forwarded; the daemon waits for the SuperNode, removes its pid file and
    exits 0.
"""

from __future__ import annotations

import json
import random
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

from client.daemon.preflight import acquire_pid_file, release_pid_file, validate_data
from client.daemon.site_config import SiteConfig
from common.ops import pki
from common.ops.deploy_toml import split_host_port
from common.atomic import atomic_write_json
from common.errors import ConfigError, MedfedError, SecurityError
from common.ops.supervise import Child, LogSink, StopFlag, flower_bin, flower_env

MIN_BACKOFF_S = 2.0
MAX_BACKOFF_S = 60.0
GAVE_UP_GRACE_S = 10.0  # a SuperNode that gave up should exit within this; else it hangs
REFUSED_LIMIT_S = 600.0  # refusals of a known key for this long: it was revoked
KNOWN_NODE_RETRY_S = 5.0  # retry pace while the server still counts our previous session as online
KNOWN_NODE_WINDOW_S = 180.0  # after such a refusal, keep that pace this long whatever the next exit
CONNECTED_RE = re.compile(r"SuperNode ID: (\d+)")
GAVE_UP = "Giving up reconnection"
ALIVE_MARKS = ("Connection successful after", "SuperNode ID:", "Receiving:")
LOG_PREFIX = "medfed-client"


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
    refused: bool = False  # "Failed to activate SuperNode": fatal only for a never-activated key


def classify_exit(code: int | None, output: str, config: SiteConfig) -> ExitReason:
    """Why did the SuperNode stop, and is a restart worth trying? (Flower 1.41 messages.)"""
    if "[code: 2004]" in output or "Failed to activate SuperNode" in output:
        return ExitReason("the server refused this site's node key", SecurityError(
            f"The server refused site {config.name}'s node key ({config.private_key}): it is not registered there, "
            "or another SuperNode is online with the same key (Flower: Failed to activate SuperNode).",
            "send this site's .pub file to the operator, who records it with `medfed pki node --public-key` and "
            "restarts the server. A key that was unregistered (revoked) can never be registered again: make a new one.",
        ), refused=True)
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


INSECURE_TO_TLS_HINT = "; the server answers in TLS, which insecure mode cannot speak: remove --insecure / insecure = true"


def server_speaks_tls(address: str, timeout: float = 5.0) -> bool:
    """Does `host:port` complete a TLS handshake? Asked only when an insecure site cannot connect.

    Why a probe and not Flower's message: a plaintext request to a TLS port fails with whatever
    the HTTP client makes of the reply ("Server disconnected without sending a response", a
    reset, a timeout on a loaded machine), so the text is no reliable sign. The handshake is.
    Nothing is verified or sent: the socket closes right after the handshake.
    """
    host_port = split_host_port(address)
    if host_port is None:
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(host_port, timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host_port[0]):
                return True
    except (OSError, ssl.SSLError):
        return False


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


def known_node_retry_delay() -> float:
    """While the server still counts this node's previous session as online: ~5 s, jittered."""
    return KNOWN_NODE_RETRY_S * random.uniform(0.8, 1.2)


class ReconnectPacer:
    """How long to wait before the next SuperNode start, given how the last one ended.

    Why a class of its own: the pace decides whether a killed hospital is back for the next
    round. A hospital restarted after a crash is refused for up to a minute (the server still
    counts its old session online) and then let in at once. Counting those refusals as failures
    grew the backoff to a minute, so the hospital came back rounds late. Here a refusal of a
    known key never counts, and for `KNOWN_NODE_WINDOW_S` after one every exit is retried at the
    short pace; only genuine absences of the server back off exponentially.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.refused_since: float | None = None  # start of the current run of refusals
        self.last_refused: float | None = None

    def refused_for(self) -> float:
        """Seconds the server has refused this (known) key without a break."""
        return 0.0 if self.refused_since is None else self.clock() - self.refused_since

    def after_exit(self, *, connected: bool, known_key_refused: bool) -> float:
        now = self.clock()
        if connected:
            self.failures = 0
        if known_key_refused:
            self.refused_since = self.refused_since if self.refused_since is not None else now
            self.last_refused = now
            return known_node_retry_delay()
        self.refused_since = None
        if self.last_refused is not None and now - self.last_refused < KNOWN_NODE_WINDOW_S:
            return known_node_retry_delay()
        self.failures += 1
        return backoff_delay(self.failures)


class Supervisor:
    def __init__(self, config: SiteConfig, sink: LogSink, stop: StopFlag) -> None:
        self.config = config
        self.sink = sink
        self.stop = stop
        self.env = flower_env(config.flwr_home)
        self.fingerprint = pki.check_node_identity(config.private_key) if config.private_key else ""
        self.identity_file = config.state_dir / "node-identity.json"

    def activated_before(self) -> bool:
        """Has the server ever activated this key for this site (so that a refusal is news)?"""
        try:
            record = json.loads(self.identity_file.read_text())
        except (OSError, ValueError):
            return False
        return bool(self.fingerprint) and record.get("fingerprint") == self.fingerprint

    def record_activation(self, node_id: str) -> None:
        record = {"fingerprint": self.fingerprint, "node-id": node_id, "server": self.config.server}
        atomic_write_json(self.identity_file, record)

    def run(self) -> int:
        attempt = 0
        pacer = ReconnectPacer()
        while not self.stop.is_set:
            attempt += 1
            connected = threading.Event()
            gave_up: list[float] = []  # when Flower last said it gave up reconnecting

            def on_line(line: str) -> None:
                if match := CONNECTED_RE.search(line):
                    connected.set()
                    self.record_activation(match.group(1))
                    self.sink.say(f"connected to {self.config.server} as node {match.group(1)}")
                if GAVE_UP in line:
                    gave_up[:] = [time.monotonic()]
                elif any(mark in line for mark in ALIVE_MARKS):
                    gave_up.clear()

            port = self.config.runtime_port or free_port()
            argv = supernode_argv(self.config, port)
            self.sink.say(f"starting SuperNode (attempt {attempt}) for site {self.config.name} -> {self.config.server}")
            child = Child(argv, sink=self.sink, env=self.env, cwd=self.config.state_dir, on_line=on_line)
            hung = False
            while child.running() and not self.stop.wait(0.5):
                if gave_up and time.monotonic() - gave_up[0] > GAVE_UP_GRACE_S:
                    self.sink.say("the SuperNode gave up reconnecting to the server but did not exit: stopping it.")
                    child.stop(grace=15.0)
                    hung = True
            if self.stop.is_set:
                self.sink.say(f"received {self.stop.signal_name or 'a stop request'}: stopping the SuperNode.")
                code = child.stop(grace=30.0)
                self.sink.say(f"stopped (SuperNode exit code {code}).")
                return 0
            code = child.wait(10)
            reason = classify_exit(code, child.tail(60), self.config)
            if hung and reason.fatal is None:
                reason = ExitReason(f"the server is unreachable (connection lost; no answer for {self.config.max_wait_time:g} s)")
            if (self.config.insecure and reason.fatal is None and not connected.is_set()
                    and server_speaks_tls(self.config.server)):
                reason = ExitReason(reason.text + INSECURE_TO_TLS_HINT)
            known_key_refused = reason.refused and self.activated_before() and pacer.refused_for() < REFUSED_LIMIT_S
            if known_key_refused:
                reason = ExitReason(
                    "the server refused to activate this node, which it knows: after a crash or a server restart "
                    "it counts the node's old session as online for up to a minute; if this lasts, the key was "
                    "unregistered"
                )
            if reason.fatal is not None:
                self.sink.say(f"SuperNode exited with code {code}: {reason.text}; not restarting.")
                raise reason.fatal
            delay = pacer.after_exit(connected=connected.is_set(), known_key_refused=known_key_refused)
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
