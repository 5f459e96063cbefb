"""`medfed simulate --ray-address`: a federation on a running two-node Ray cluster.

Both nodes run on 127.0.0.1 (ray.cluster_utils.Cluster: a head plus a second raylet, each a
child process of this test with its own PID, stopped by `Cluster.shutdown`; started once for the module's tests). One CPU per node
and one CPU per hospital means one hospital worker per node; the check is made from inside the
run (a recorder listener) while the hospitals' workers are up: a Flower `ClientAppActor` worker
runs under each node's raylet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.ray_engine import EngineSettings, keep_ray_on_loopback
from simulations.simulate import build_config, run
from tests.listening import tree_cmdlines, tree_listeners


@pytest.fixture(scope="module")
def two_node_cluster():
    keep_ray_on_loopback()  # the test cluster too: Ray would otherwise use the LAN address
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes(timeout=60)
        raylets = {
            node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid for node in cluster.list_all_nodes()
        }
        yield cluster, raylets
    finally:
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_federation_runs_on_both_nodes_of_an_existing_ray_cluster(two_node_cluster, tmp_path: Path, data_dir: Path) -> None:
    cluster, raylets = two_node_cluster
    assert len(raylets) == 2
    actor_parents: set[int] = set()
    exposed: list = []

    def probe(kind: str, payload: dict) -> None:
        if kind == "fit_done":  # the hospitals' workers exist now
            for pid, (ppid, cmd) in tree_cmdlines().items():
                if "ClientAppActor" in cmd:
                    actor_parents.add(ppid)
            exposed.extend(s for s in tree_listeners() if not s.loopback)

    cfg = build_config({"dataset": "heart-disease", "partition": "iid", "num-sites": 3, "num-rounds": 1,
                        "local-epochs": 1, "out-dir": str(tmp_path / "run")})
    result = run(cfg, engine=EngineSettings(address=cluster.address, cpus_per_site=1), listeners=[probe])
    assert result.metrics["final"]["round"] == 1
    assert len(result.metrics["final"]["sites"]) == 3
    assert actor_parents == raylets, f"hospital workers ran under {actor_parents}, raylets are {raylets}"
    assert not exposed, f"listening beyond loopback: {exposed}"
    import ray

    assert not ray.is_initialized(), "the driver disconnects from the cluster after the run"


@pytest.mark.slow
def test_a_cluster_without_room_for_one_hospital_is_refused_before_training(two_node_cluster, tmp_path: Path, data_dir: Path) -> None:
    from common.errors import ConfigError

    cluster, _ = two_node_cluster
    cfg = build_config({"dataset": "heart-disease", "partition": "iid", "num-sites": 3, "num-rounds": 1,
                        "out-dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError) as err:
        run(cfg, engine=EngineSettings(address=cluster.address, cpus_per_site=2))
    assert cluster.address in err.value.message and "--cpus-per-site 2" in err.value.message
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_nodes_that_cannot_see_the_data_folder_are_named_before_training(
    two_node_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from common.errors import ConfigError
    from simulations import ray_engine

    cluster, _ = two_node_cluster
    monkeypatch.setenv("MEDFED_DATA_DIR", str(tmp_path / "not-mounted"))  # what every worker gets
    with pytest.raises(ConfigError) as err:
        ray_engine.start(EngineSettings(address=cluster.address), 3)
    assert err.value.message.count("has no data folder") == 2, err.value.message  # both nodes named
    assert "same path on every node" in err.value.fix
    assert not ray.is_initialized()
