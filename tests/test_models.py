"""Model registry: DP-compatible as built, right output shapes, strict weight loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from common.errors import ConfigError, ModelMismatchError
from common.models import (
    MODEL_NAMES,
    build_model,
    count_parameters,
    default_model_for,
    get_weights,
    model_options,
    model_signature,
    resolve_model_name,
    set_weights,
)

SHAPES = {
    "cnn": [(1, 28, 28), (3, 64, 64), (1, 224, 224)],
    "gru": [(1, 140), (2, 1000)],
    "lstm": [(1, 140)],
    "mlp": [(12,), (1, 140)],
    "text-bag": [(64,)],
    "text-linear": [(64,), (1,)],
    "text-gru": [(64,), (13,)],
    "text-lstm": [(64,)],
}
CASES = [(name, shape) for name in MODEL_NAMES for shape in SHAPES[name]]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_every_model_is_opacus_valid_as_built_and_gives_logits(name, shape):
    torch.manual_seed(0)
    text = name.startswith("text-")
    model = build_model(name, shape, 3, **model_options("text" if text else "image", 100))
    ModuleValidator.validate(model, strict=True)  # raises on BatchNorm, nn.GRU, ...
    x = torch.randint(0, 100, (2, *shape)).float() if text else torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_default_cnn_is_small_and_gru_shortens_long_signals():
    assert 40_000 < count_parameters(build_model("cnn", (1, 28, 28), 2)) < 80_000
    long_gru = build_model("gru", (1, 1000), 2)
    assert isinstance(long_gru.front, torch.nn.Sequential)  # strided Conv1d front
    assert not isinstance(build_model("gru", (1, 50), 2).front, torch.nn.Sequential)
    assert count_parameters(build_model("cnn", (1, 28, 28), 2, width=8)) < 10_000


def test_defaults_by_modality_and_bad_requests():
    assert [default_model_for(m) for m in ("image", "signal", "tabular", "text")] == ["cnn", "gru", "mlp", "text-linear"]
    with pytest.raises(ConfigError, match="hash buckets"):
        build_model("text-bag", (64,), 2)  # a text model is told its tokeniser's buckets
    with pytest.raises(ConfigError, match="modality"):
        default_model_for("video")
    with pytest.raises(ConfigError, match="resnet"):
        build_model("resnet", (1, 28, 28), 2)
    with pytest.raises(ConfigError, match="channels"):
        build_model("cnn", (1, 140), 2)
    with pytest.raises(ConfigError, match="depth"):
        build_model("mlp", (12,), 2, depth=3)


def test_auto_resolves_to_the_modality_default_and_a_named_model_stays():
    assert resolve_model_name("auto", "signal") == "gru"
    assert resolve_model_name("mlp", "image") == "mlp"
    with pytest.raises(ConfigError, match="modality"):
        resolve_model_name("auto", "video")


def test_weights_round_trip_and_signature():
    torch.manual_seed(0)
    a, b = build_model("gru", (1, 140), 5), build_model("gru", (1, 140), 5)
    sig = model_signature(a)
    assert sig == model_signature(b) and all(dtype == "float32" for _, _, dtype in sig)
    assert [shape for _, shape, _ in sig] == [w.shape for w in get_weights(a)]
    set_weights(b, get_weights(a))
    x = torch.randn(3, 1, 140)
    assert torch.equal(a(x), b(x))


def _bad(weights, index, value):
    out = [w.copy() for w in weights]
    out[index] = value
    return out


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda w: w[:-1], "weight arrays"),
        (lambda w: _bad(w, 0, np.zeros((3, 3), np.float32)), "shape"),
        (lambda w: _bad(w, 0, w[0].astype(np.float64)), "dtype"),
        (lambda w: _bad(w, 0, np.full_like(w[0], np.nan)), "NaN"),
        (lambda w: _bad(w, -1, np.full_like(w[-1], np.inf)), "NaN or infinite"),
    ],
)
def test_set_weights_rejects_mismatches_before_loading_anything(corrupt, match):
    model = build_model("mlp", (12,), 2)
    before = get_weights(model)
    good_then_bad = corrupt([w + 1 for w in before])  # valid new values except the corrupt one
    with pytest.raises(ModelMismatchError, match=match):
        set_weights(model, good_then_bad)
    for old, now in zip(before, get_weights(model)):
        np.testing.assert_array_equal(old, now)


def test_pick_device():
    from common.device import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="tpu"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_device("cuda")
