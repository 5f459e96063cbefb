"""simulations/simulate.py: `build_config` takes Flower's keys and the same defaults as `flwr run .`."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import NON_PRIVATE_LEARNING_RATE, PrivacyConfig, RunConfig
from common.errors import ConfigError
from simulations.simulate import build_config


def test_build_config_takes_flower_keys_and_none_keeps_the_default(tmp_path: Path) -> None:
    cfg = build_config({"num-sites": 5, "privacy-mode": "none", "strategy": "fedprox", "epsilon": None,
                        "out-dir": str(tmp_path)})
    assert (cfg.data.num_sites, cfg.privacy.mode, cfg.federation.strategy) == (5, "none", "fedprox")
    assert cfg.privacy.epsilon == PrivacyConfig().epsilon and cfg.out_dir == str(tmp_path)
    assert cfg.training.learning_rate == NON_PRIVATE_LEARNING_RATE  # the same rule as `flwr run .`
    assert cfg == RunConfig.from_flower({"num-sites": 5, "privacy-mode": "none", "strategy": "fedprox",
                                         "out-dir": str(tmp_path)})


def test_build_config_refuses_other_spellings_and_unknown_strategies() -> None:
    with pytest.raises(ConfigError, match="data.num_sites"):
        build_config({"data.num_sites": 5})
    with pytest.raises(ConfigError, match="fedsgd"):
        build_config({"strategy": "fedsgd"})
