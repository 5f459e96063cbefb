"""client/training.py round_learning_rate and the per-round rate reaching the optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.privacy.private_trainer import NonPrivateTrainer
from client.training import resolve_schedule, round_learning_rate
from common.config import RunConfig
from common.datasets.contract import MODALITIES, Split
from common.errors import ConfigError
from common.models import build_model


def test_cosine_decays_from_the_base_rate_and_constant_stays():
    rates = [round_learning_rate(0.5, "cosine", r, 10) for r in range(1, 11)]
    assert rates[0] == 0.5
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
    assert rates[-1] < 0.05
    assert round_learning_rate(0.5, "cosine", 5, 1) == 0.5  # a one-round run keeps its rate
    assert {round_learning_rate(0.5, "constant", r, 10) for r in range(1, 11)} == {0.5}


def test_auto_decays_for_images_only():
    assert resolve_schedule("auto", "image") == "cosine"
    for modality in (m for m in MODALITIES if m != "image"):
        assert resolve_schedule("auto", modality) == "constant"
    assert resolve_schedule("constant", "image") == "constant"
    assert resolve_schedule("cosine", "tabular") == "cosine"


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="learning-rate-schedule='step' is unknown"):
        RunConfig.from_flower(RunConfig().to_flower() | {"learning-rate-schedule": "step"})


def test_round_rate_reaches_the_optimizer():
    """A zero rate for the round leaves the model unchanged; the trainer's own rate moves it."""
    rng = np.random.default_rng(0)
    split = Split(torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32)), torch.from_numpy(rng.integers(0, 2, 40)))
    t = NonPrivateTrainer(local_epochs=1, batch_size=8, num_examples=40, learning_rate=0.5)
    model = build_model("mlp", (5,), 2)
    before = [p.detach().clone() for p in model.parameters()]
    t.train_round(model, split, device=torch.device("cpu"), learning_rate=0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    t.train_round(model, split, device=torch.device("cpu"))
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
