"""The Ray engine under `medfed simulate`: a private one on loopback, or a cluster the user names.

Why medfed starts Ray itself instead of leaving it to Flower's simulation backend: Ray has no
authentication, and by default its GCS, raylet, workers and runtime-env agent listen on every
interface (and Ray rewrites 127.0.0.1 to the machine's LAN address). Anyone who reached those
ports could run code as the researcher and read the hospital data being simulated. So the
embedded engine is started here with every address pinned to 127.0.0.1; Flower's backend finds
Ray initialised and uses it as is (flwr RayBackend.init_ray skips `ray.init`).

Attaching to a cluster (`--ray-address`) is the one case where Ray talks beyond loopback,
because the user asked for it by address; the checks here (reachable, enough CPUs/GPUs for one
hospital, the data folder and medfed present on every node) run before any hospital trains.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

from common.errors import ConfigError

LOOPBACK = "127.0.0.1"
# Ray reads this at import: with it "0", Ray's own idea of "this node's address" is 127.0.0.1
# instead of the interface address it would otherwise substitute for 127.0.0.1.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """Where the virtual hospitals run and what each one gets.

    address: None = a private Ray on this machine (loopback only); else a running cluster's
             address ("HOST:PORT" of its GCS, or "auto" for the cluster `ray start` left here).
    cpus_per_site / gpus_per_site: the Ray resources one virtual hospital holds while it works;
             gpus_per_site None = automatic (a share of this machine's GPU, if any).
    """

    address: str | None = None
    cpus_per_site: float = 1.0
    gpus_per_site: float | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_site <= 0:
            raise ConfigError(
                f"--cpus-per-site must be positive, got {self.cpus_per_site}.",
                "give each hospital at least a fraction of a CPU, e.g. --cpus-per-site 1.",
            )
        if self.gpus_per_site is not None and self.gpus_per_site < 0:
            raise ConfigError(
                f"--gpus-per-site cannot be negative, got {self.gpus_per_site}.",
                "use 0 for CPU-only hospitals or a fraction such as 0.25.",
            )
        if self.address is not None and not self.address.strip():
            raise ConfigError("--ray-address is empty.", "pass HOST:PORT of the cluster's head, or leave it out.")


def keep_ray_on_loopback() -> None:
    """Make Ray's node address 127.0.0.1 in this process and in every process it starts.

    Ray evaluates the variable when `ray._private.ray_constants` is first imported; if Ray was
    imported earlier in this process, the constant is corrected too (Ray reads it at call time)."""
    os.environ[LOOPBACK_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


def _gpus_per_site(settings: EngineSettings, num_sites: int, cpus: int) -> float:
    if settings.gpus_per_site is not None:
        return float(settings.gpus_per_site)
    import torch

    if settings.address is None and torch.cuda.is_available():
        return round(1.0 / min(num_sites, max(cpus, 1)), 3)
    return 0.0


def client_resources(settings: EngineSettings, num_sites: int) -> dict[str, float]:
    """What one virtual hospital holds (Flower's `client_resources`)."""
    cpus = os.cpu_count() or 1
    return {"num_cpus": float(settings.cpus_per_site), "num_gpus": _gpus_per_site(settings, num_sites, cpus)}


def _worker_env() -> dict[str, str]:
    """What every Ray worker needs to run medfed's ClientApp: the import path of this process
    (as Flower's backend passes it) and the data folder."""
    pythonpath = os.pathsep.join(p for p in sys.path if p)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{os.environ['PYTHONPATH']}{os.pathsep}{pythonpath}"
    env = {"PYTHONPATH": pythonpath}
    if os.environ.get("MEDFED_DATA_DIR"):
        env["MEDFED_DATA_DIR"] = os.environ["MEDFED_DATA_DIR"]
    return env


def start(settings: EngineSettings, num_sites: int, *, verbose: bool = False) -> dict[str, Any]:
    """Start (or attach to) Ray, check it can host a hospital, and return Flower's backend config.

    Raises ConfigError, with Ray shut down again, when the cluster cannot be reached or cannot
    host one hospital with the requested resources."""
    if settings.address is None:
        keep_ray_on_loopback()
    import ray

    if ray.is_initialized():
        ray.shutdown()
    resources = client_resources(settings, num_sites)
    common: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "log_to_driver": verbose,
        "runtime_env": {"env_vars": _worker_env()},
    }
    if settings.address is None:
        _check_local_capacity(resources)  # before Ray starts: this machine's counts are known
        try:
            # address="local": always a new private instance. Without it Ray would attach to any
            # cluster `ray start` left on this machine (RAY_ADDRESS, /tmp/ray/ray_current_cluster),
            # and the user asked for a cluster only with --ray-address.
            ray.init(address="local", num_cpus=os.cpu_count() or 1, _node_ip_address=LOOPBACK, **common)
        except Exception as err:  # Ray raises bare RuntimeError/ValueError here
            raise ConfigError(f"Could not start the local Ray engine: {err}", "run with --verbose for Ray's log.") from err
    else:  # the cluster's own addresses apply: this driver must reach its nodes and they it
        _attach(ray, settings.address, common)
    try:
        _check_capacity(ray, settings, resources, num_sites)
        if settings.address is not None:
            _check_nodes_can_run_medfed(ray)
    except BaseException:
        ray.shutdown()
        raise
    return {"client_resources": resources, "init_args": {}}


def _attach(ray: Any, address: str, common: dict[str, Any]) -> None:
    args = {k: v for k, v in common.items() if k != "include_dashboard"}
    if address.startswith("ray://"):
        raise ConfigError(
            f"--ray-address {address} is a Ray Client address; medfed runs its ServerApp as the Ray driver.",
            "pass the head node's GCS address HOST:PORT (default port 6379) from a machine of the cluster.",
        )
    _check_reachable(address)
    try:
        ray.init(address=address, **args)
    except Exception as err:  # ConnectionError, TimeoutError, ValueError, RuntimeError
        ray.shutdown()
        raise ConfigError(
            f"Could not attach to the Ray cluster at --ray-address {address}: {type(err).__name__}: {err}",
            "check the head's address and port (`ray status` on the head prints it), that this machine can "
            "reach it, and that both run the same Ray and Python versions; leave --ray-address out to run here.",
        ) from err


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable GCS for many minutes; one TCP connect answers in seconds."""
    import socket

    if address == "auto":
        return  # Ray finds the cluster `ray start` left on this machine, or says it found none
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"--ray-address {address} is not HOST:PORT.",
            "pass the address of the cluster's head node, e.g. --ray-address 10.0.0.5:6379, or auto.",
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConfigError(
            f"Could not attach to the Ray cluster at --ray-address {address}: nothing answers there ({err}).",
            "check the head's address and port (`ray status` on the head prints it) and that this machine can "
            "reach it; leave --ray-address out to run on a private Ray on this machine.",
        ) from err


def _check_local_capacity(resources: dict[str, float]) -> None:
    import torch

    cpus, gpus = float(os.cpu_count() or 1), float(torch.cuda.device_count())
    if resources["num_cpus"] > cpus or resources["num_gpus"] > gpus:
        raise ConfigError(
            f"this machine ({cpus:g} CPU, {gpus:g} GPU) cannot host one virtual hospital with --cpus-per-site "
            f"{resources['num_cpus']:g} and --gpus-per-site {resources['num_gpus']:g}.",
            "lower --cpus-per-site / --gpus-per-site, or run on a Ray cluster with bigger nodes (--ray-address).",
        )


def _check_capacity(ray: Any, settings: EngineSettings, resources: dict[str, float], num_sites: int) -> None:
    """At least one hospital must fit on some node, or Flower would wait for ever / fail late."""
    slots = 0
    largest_cpu, largest_gpu = 0.0, 0.0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        cpu, gpu = float(have.get("CPU", 0)), float(have.get("GPU", 0))
        largest_cpu, largest_gpu = max(largest_cpu, cpu), max(largest_gpu, gpu)
        fit = int(cpu // resources["num_cpus"])
        if resources["num_gpus"] > 0:
            fit = min(fit, int(gpu // resources["num_gpus"]))
        slots += fit
    where = f"the Ray cluster at {settings.address}" if settings.address else "this machine"
    if slots == 0:
        raise ConfigError(
            f"{where} cannot host one virtual hospital with --cpus-per-site {resources['num_cpus']:g}"
            f" and --gpus-per-site {resources['num_gpus']:g} (largest node: {largest_cpu:g} CPU, {largest_gpu:g} GPU).",
            "lower --cpus-per-site / --gpus-per-site, or add nodes with more CPUs/GPUs to the cluster.",
        )
    logging.getLogger("medfed.simulate").info(
        "Ray: %d hospital(s) at a time for %d sites on %s", slots, num_sites, where
    )


def _check_nodes_can_run_medfed(ray: Any) -> None:
    """On a real cluster, each node must import medfed and see the data folder at the same path."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def check() -> tuple[bool, str, bool]:  # defined here so Ray ships it by value, not by import
        import importlib.util
        import os

        data_dir = os.environ.get("MEDFED_DATA_DIR", "")
        found = importlib.util.find_spec("client.client_app") is not None
        return found, data_dir, bool(data_dir) and os.path.isdir(data_dir)

    probe = ray.remote(num_cpus=0)(check)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        for n in nodes
    ]
    try:
        results = ray.get(refs, timeout=120)
    except Exception as err:
        raise ConfigError(
            f"The Ray cluster did not run a check task on every node: {err}",
            "see `ray status` on the head; every node must be alive and able to start workers.",
        ) from err
    problems = []
    for node, (has_medfed, data_dir, data_ok) in zip(nodes, results):
        name = node.get("NodeManagerAddress", node["NodeID"][:8])
        if not has_medfed:
            problems.append(f"node {name} cannot import medfed")
        if os.environ.get("MEDFED_DATA_DIR") and not data_ok:
            problems.append(f"node {name} has no data folder {data_dir or '(MEDFED_DATA_DIR unset)'}")
    if problems:
        raise ConfigError(
            "The Ray cluster cannot run medfed's hospitals: " + "; ".join(problems) + ".",
            "install medfed (same version) on every node and make the data folder (--data-dir / MEDFED_DATA_DIR) "
            "available at the same path on every node, e.g. a shared file system.",
        )


def stop() -> None:
    """Disconnect (cluster) or stop (local engine) Ray; Flower's backend usually did already."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
