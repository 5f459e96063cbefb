"""Property tests of common/config.py: valid configs round-trip through Flower's flat mapping,
invalid values are refused with a ConfigError naming the key, junk never raises anything else."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import (
    MODELS,
    PARTITIONS,
    NON_PRIVATE_LEARNING_RATE,
    PRIVATE_LEARNING_RATE,
    DataConfig,
    FederationConfig,
    PrivacyConfig,
    RunConfig,
    SecAggConfig,
    TrainingConfig,
)
from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.formats import FORMATS
from common.errors import ConfigError
from common.privacy import PRIVACY_MODES
from common.privacy.mode import ACCOUNTANTS, CLIPPINGS
from server.strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@st.composite
def valid_configs(draw) -> RunConfig:
    secagg_on = draw(st.booleans())
    num_sites = draw(st.integers(3 if secagg_on else 1, 30))
    shares = draw(st.integers(3, num_sites)) if secagg_on else draw(st.integers(3, 10))
    threshold = draw(st.integers(2, shares - 1))
    min_sites = draw(st.integers(threshold if secagg_on else 1, num_sites))
    data_path = draw(st.one_of(st.just(""), text.filter(bool)))
    data = DataConfig(
        dataset=draw(st.sampled_from(BUILTIN_DATASETS.names())),
        data_path=data_path,
        data_format=draw(st.sampled_from(FORMATS.names())) if data_path else "",
        num_sites=num_sites,
        partition=draw(st.sampled_from(PARTITIONS)),
        alpha=draw(positive),
        seed=draw(st.integers(0, 2**31)),
    )
    training = TrainingConfig(
        local_epochs=draw(st.integers(1, 50)),
        batch_size=draw(st.integers(1, 4096)),
        learning_rate=draw(positive),
        momentum=draw(st.floats(0, 0.999)),
        proximal_mu=draw(st.floats(0, 100)),
        model=draw(st.sampled_from(MODELS)),
    )
    privacy = PrivacyConfig(
        mode=draw(st.sampled_from(PRIVACY_MODES.names())),
        epsilon=draw(positive),
        delta=draw(st.floats(1e-12, 0.999)),
        max_grad_norm=draw(positive),
        accountant=draw(st.sampled_from(ACCOUNTANTS)),
        clipping=draw(st.sampled_from(CLIPPINGS)),
        client_noise_multiplier=draw(st.floats(0, 10)),
    )
    secagg = SecAggConfig(
        enabled=secagg_on,
        num_shares=shares,
        reconstruction_threshold=threshold,
        update_bound=draw(positive),
        max_weight=draw(st.floats(0, 1e6)),
    )
    federation = FederationConfig(
        num_rounds=draw(st.integers(1, 1000)),
        strategy=draw(st.sampled_from(STRATEGIES.names())),
        server_learning_rate=draw(positive),
        min_sites=min_sites,
        round_timeout=draw(positive),
        central_eval=draw(st.booleans()),
    )
    return RunConfig(data, training, privacy, secagg, federation, out_dir=draw(text), run_name=draw(text))


@FAST
@given(valid_configs())
def test_valid_configs_round_trip_through_flower(cfg):
    assert cfg.problems() == []
    flat = cfg.to_flower()
    assert all(isinstance(k, str) and "_" not in k for k in flat)  # kebab-case keys
    assert RunConfig.from_flower(flat) == cfg


@FAST
@given(valid_configs())
def test_flower_style_string_values_are_coerced(cfg):
    """`--run-config` values may arrive as strings; numbers and booleans must parse back."""
    flat = {k: (str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else str(v))
            for k, v in cfg.to_flower().items()}
    assert RunConfig.from_flower(flat) == cfg


# (key, bad value, extra keys needed so the value matters)
INVALID = [
    ("epsilon", -1.0, {}),
    ("epsilon", 0.0, {}),
    ("epsilon", math.nan, {}),
    ("epsilon", math.inf, {}),
    ("delta", 1.0, {}),
    ("delta", 2.5, {}),
    ("delta", math.nan, {}),
    ("max-grad-norm", math.nan, {}),
    ("learning-rate", math.nan, {}),
    ("momentum", 1.0, {}),
    ("alpha", -0.5, {}),
    ("num-rounds", 0, {}),
    ("local-epochs", -3, {}),
    ("batch-size", 2.5, {}),
    ("learning-rate", -0.1, {}),
    ("privacy-mode", "maximum", {}),
    ("accountant", "gdp", {}),
    ("clipping", "per-layer", {}),
    ("model", "resnet", {}),
    ("partition", "random", {}),
    ("dataset", "cifar10", {}),
    ("data-format", "hdf5", {"data-path": "ward7.h5"}),
    ("secagg-threshold", 5, {"secagg-num-shares": 3}),
    ("secagg-threshold", 3, {"secagg-num-shares": 3}),
    ("secagg-num-shares", 9, {"num-sites": 4}),
    ("min-sites", 7, {"num-sites": 4}),
    ("client-noise-multiplier", -1.0, {"privacy-mode": "client-dp"}),
    ("round-timeout", math.inf, {}),
    ("secagg", "maybe", {}),
    ("seed", "zero", {}),
]


@pytest.mark.parametrize(("key", "value", "extra"), INVALID, ids=[f"{k}={v!r}" for k, v, _ in INVALID])
def test_invalid_values_are_rejected_naming_the_key(key, value, extra):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower({**extra, key: value})
    assert f"{key}=" in err.value.message


@FAST
@given(
    st.sampled_from(["epsilon", "delta", "alpha", "learning-rate", "momentum", "max-grad-norm", "secagg-update-bound"]),
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, "nan", "inf", "-inf", 1e400, 10**400]),
)
def test_non_finite_numbers_are_always_rejected(key, value):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower({key: value})
    assert f"{key}=" in err.value.message


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    text,
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(text, st.integers(), max_size=2),
    st.tuples(st.floats()),
    st.complex_numbers(),
)
keys = st.one_of(st.sampled_from(sorted(RunConfig().to_flower())), text, st.integers())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, junk, max_size=6))
def test_junk_never_raises_anything_but_config_error(flat):
    try:
        cfg = RunConfig.from_flower(flat)
    except ConfigError as err:
        assert err.problem and err.fix
    else:
        assert cfg.problems() == []


@pytest.mark.parametrize("not_a_mapping", [None, 42, "epsilon=8", [("epsilon", 8.0)], [1, 2]])
def test_a_non_mapping_is_a_config_error(not_a_mapping):
    with pytest.raises(ConfigError):
        RunConfig.from_flower(not_a_mapping)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower({"epsilon": -1.0, "partition": "nope", "num-rounds": 0})
    for key in ("epsilon=", "partition=", "num-rounds="):
        assert key in err.value.message


# -- learning-rate = 0: the automatic rate, resolved by RunConfig for every entry point ------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [("sample-dp", PRIVATE_LEARNING_RATE), ("client-dp", PRIVATE_LEARNING_RATE), ("none", NON_PRIVATE_LEARNING_RATE)],
)
def test_automatic_learning_rate_follows_the_privacy_mode(mode, expected):
    for cfg in (
        RunConfig.from_flower({"privacy-mode": mode}),
        RunConfig.from_flower({"privacy-mode": mode, "learning-rate": 0}),
        RunConfig.from_flower(RunConfig().to_flower() | {"privacy-mode": mode}),
        RunConfig(privacy=PrivacyConfig(mode=mode)),
    ):
        assert cfg.training.learning_rate == expected
        assert RunConfig.from_flower(cfg.to_flower()) == cfg


@pytest.mark.parametrize("mode", PRIVACY_MODES)
@pytest.mark.parametrize("rate", [PRIVATE_LEARNING_RATE, NON_PRIVATE_LEARNING_RATE, 0.2])
def test_an_explicit_learning_rate_is_kept(mode, rate):
    cfg = RunConfig.from_flower({"privacy-mode": mode, "learning-rate": rate})
    assert cfg.training.learning_rate == rate
    assert RunConfig.from_flower(cfg.to_flower()) == cfg
    assert RunConfig.from_flower({k: str(v) for k, v in cfg.to_flower().items()}) == cfg  # --run-config strings


def test_pyproject_defaults_are_the_config_defaults() -> None:
    flower_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert RunConfig.from_flower(flower_cfg) == RunConfig(), "pyproject [tool.flwr.app.config] drifted from RunConfig"
    assert set(flower_cfg) == set(RunConfig().to_flower()), "every knob must be in pyproject"


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"secagg-threshold": 3, "secagg-num-shares": 3}, "secagg-threshold"),
        ({"secagg-num-shares": 2}, "secagg-num-shares"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"min-sites": 9}, "min-sites"),
    ],
)
def test_invalid_run_config_is_refused_with_the_key_named(changes: dict, key: str) -> None:
    flat = RunConfig().to_flower() | changes
    with pytest.raises(ConfigError) as err:
        RunConfig.from_flower(flat)
    assert key in err.value.message
