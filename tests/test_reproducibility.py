"""`medfed simulate --seed S` is reproducible, DP noise included; deployed sites are never seeded."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.reproducibility import derived_seed, seed_site_work
from client.site import site_run
from common.config import RunConfig


def _short_run_config(out: Path, seed: int) -> RunConfig:
    return RunConfig.from_flower({
        **RunConfig().to_flower(),
        "dataset": "heart-disease", "partition": "natural", "num-rounds": 2, "local-epochs": 1,
        "seed": seed, "out-dir": str(out),
    })


def _comparable(metrics: dict) -> list:
    """Every metric of every round, without wall-clock durations."""
    return [{k: v for k, v in r.items() if k != "duration_s"} for r in metrics["rounds"]]


@pytest.mark.slow
def test_two_seeded_simulations_give_identical_metrics(tmp_path: Path, data_dir: Path) -> None:
    from simulations.simulate import run

    first = run(_short_run_config(tmp_path / "a", seed=7), data_dir=str(data_dir))
    second = run(_short_run_config(tmp_path / "b", seed=7), data_dir=str(data_dir))
    eps = [e["epsilon"]["2"] for e in first.privacy["sites"].values()]
    assert all(e > 0 for e in eps), "the runs must be private: DP noise is what seeding has to repeat"
    assert _comparable(first.metrics) == _comparable(second.metrics)
    assert first.privacy["sites"] == second.privacy["sites"]


def test_derived_seeds_differ_by_site_round_and_step_and_are_stable() -> None:
    seeds = {derived_seed(0, s, r, step) for s in ("a", "b") for r in (1, 2) for step in ("fit", "x")}
    assert len(seeds) == 8
    assert derived_seed(0, "a", 1, "fit") == derived_seed(0, "a", 1, "fit") < 2**63


def test_seeding_repeats_torch_noise_and_no_seed_leaves_it_alone() -> None:
    import torch

    seed_site_work(3, "a", 1, "fit")
    one = torch.randn(5)
    seed_site_work(3, "a", 1, "fit")
    assert torch.equal(one, torch.randn(5))
    state = torch.get_rng_state()
    seed_site_work(None, "a", 1, "fit")
    assert torch.equal(state, torch.get_rng_state())


def test_a_deployed_site_is_never_seeded(tmp_path: Path) -> None:
    cfg = _short_run_config(tmp_path / "run", seed=7)
    deployed = site_run(cfg, {"site": "cleveland", "dataset": "heart-disease", "state-dir": str(tmp_path),
                               "epsilon": 5.0, "delta": 1e-4}, 1)
    assert deployed.seed is None
    simulated = site_run(cfg, {"partition-id": 0, "num-partitions": 4}, 1)
    assert simulated.seed == 7
