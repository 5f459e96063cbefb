"""The privacy-mode registry: exactly three modes, each answering for its trainer, its server
wrapper, its update bound and its privacy record; a new mode plugs in with one registration."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

from client.privacy.private_trainer import NonPrivateTrainer, PrivateTrainer
from client.privacy.trainers import make_trainer
from common.config import PrivacyConfig, RunConfig, SecAggConfig
from common.errors import ConfigError
from common.privacy import PRIVACY_MODES, privacy_mode, recorded_mode
from common.privacy.client_dp import CLIENT_DP_MIN_SITES
from common.privacy.mode import CLIENT_SIDE_FIXED_CLIPPING, DP_SGD, PLAIN, PrivacyMode
from server.privacy.wrappers import wrap_for_privacy

SECAGG = SecAggConfig(update_bound=4.0)
PRIVACY = PrivacyConfig(max_grad_norm=0.3)


def test_the_registry_lists_exactly_the_three_modes() -> None:
    assert PRIVACY_MODES.names() == ("sample-dp", "client-dp", "none")
    assert all(privacy_mode(name).name == name for name in PRIVACY_MODES)


def test_an_unknown_mode_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        privacy_mode("maximum")
    assert "privacy-mode='maximum'" in err.value.message
    assert "sample-dp, client-dp, none" in err.value.message
    with pytest.raises(ConfigError, match="use one of sample-dp, client-dp, none"):
        RunConfig.from_flower({"privacy-mode": "maximum"})


@pytest.mark.parametrize(
    ("name", "bound", "trainer", "wrapper", "sample_level", "private"),
    [
        ("sample-dp", 4.0, DP_SGD, None, True, True),
        ("client-dp", 0.3, PLAIN, CLIENT_SIDE_FIXED_CLIPPING, False, True),
        ("none", 4.0, PLAIN, None, False, False),
    ],
)
def test_each_mode_names_its_update_bound_trainer_and_wrapper(name, bound, trainer, wrapper, sample_level, private):
    mode = privacy_mode(name)
    assert mode.update_bound(SECAGG, dataclasses.replace(PRIVACY, mode=name)) == bound
    assert (mode.local_training, mode.aggregate_wrapper) == (trainer, wrapper)
    assert (mode.sample_level, mode.private) == (sample_level, private)


def test_only_the_budgeted_modes_check_the_budget() -> None:
    bad = PrivacyConfig(epsilon=-1.0, client_noise_multiplier=-1.0)
    assert [p.split("=")[0] for p in privacy_mode("sample-dp").problems(bad)] == ["epsilon"]
    assert [p.split("=")[0] for p in privacy_mode("client-dp").problems(bad)] == ["epsilon", "client-noise-multiplier"]
    assert privacy_mode("none").problems(bad) == []


def test_the_trainer_and_the_server_wrapper_follow_the_mode(tmp_path) -> None:
    ledger = tmp_path / "privacy-ledger.json"
    cfg = RunConfig.from_flower({"privacy-mode": "client-dp", "num-sites": 3})
    assert isinstance(make_trainer(cfg, num_examples=50, ledger_path=ledger, run_name="run"), NonPrivateTrainer)
    assert isinstance(make_trainer(RunConfig(), num_examples=50, ledger_path=ledger, run_name="run"), PrivateTrainer)
    inner = FedAvg()
    assert isinstance(wrap_for_privacy(inner, cfg.privacy, num_sites=3), DifferentialPrivacyClientSideFixedClipping)
    assert wrap_for_privacy(inner, RunConfig().privacy, num_sites=3) is inner


def test_client_dp_calibrates_its_noise_and_records_epsilon_per_round() -> None:
    cfg = RunConfig.from_flower({"privacy-mode": "client-dp", "num-rounds": 3, "epsilon": 8.0, "num-sites": 4})
    mode = privacy_mode("client-dp")
    calibrated = mode.calibrated(cfg)
    assert calibrated.privacy.client_noise_multiplier > 0
    record = mode.privacy_record(calibrated)
    eps = record["epsilon_by_round"]
    assert list(eps) == ["1", "2", "3"] and eps["1"] < eps["3"] <= 8.0 * 1.01
    assert mode.setup_warnings(calibrated, num_sites=4) and not mode.setup_warnings(calibrated, CLIENT_DP_MIN_SITES)
    assert privacy_mode("sample-dp").privacy_record(cfg) is None and privacy_mode("none").calibrated(cfg) is cfg


def test_a_run_record_from_an_unknown_mode_reads_as_none() -> None:
    assert recorded_mode("client-dp") is privacy_mode("client-dp")
    assert recorded_mode("retired-mode") is None and recorded_mode(None) is None


class _LocalDP(PrivacyMode):
    """A made-up mode that trains like `none` but checks a budget: what a new file would hold."""

    name: ClassVar[str] = "local-test-dp"
    label: ClassVar[str] = "test-only mode"

    def problems(self, privacy: PrivacyConfig) -> list[str]:
        return [] if privacy.epsilon > 0 else ["epsilon must be positive."]


def test_a_new_mode_needs_only_its_registration(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(PRIVACY_MODES, "_entries", dict(PRIVACY_MODES.items()))  # restored after the test
    PRIVACY_MODES.register(_LocalDP.name, _LocalDP())
    cfg = RunConfig.from_flower({"privacy-mode": "local-test-dp", "secagg": False, "num-sites": 2})
    trainer = make_trainer(cfg, num_examples=50, ledger_path=tmp_path / "ledger.json", run_name="run")
    assert isinstance(trainer, NonPrivateTrainer) and not (tmp_path / "ledger.json").exists()
    inner = FedAvg()
    assert wrap_for_privacy(inner, cfg.privacy, num_sites=2) is inner
    with pytest.raises(ConfigError, match="epsilon must be positive"):
        RunConfig.from_flower({"privacy-mode": "local-test-dp", "epsilon": -1.0})
