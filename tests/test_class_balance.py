"""client/class_balance.py: the class-balanced losses undo a site's label skew (on a bias-only
model the optimum is the balanced one), and under DP-SGD they change nothing in the mechanism:
each example's gradient of the balanced loss is clipped to max-grad-norm like plain
cross-entropy's (checked by hand, flat and ghost clipping), and the noise, sampling rate, steps
and epsilon in the ledger are identical for every setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.class_balance import SiteBalancedLoss, make_criterion
from client.privacy.ledger import PrivacyLedger
from client.privacy.private_trainer import NonPrivateTrainer, PrivateTrainer
from client.training import train_epochs
from common.config import CLASS_BALANCES, PrivacyConfig, RunConfig
from common.datasets.contract import Split
from common.errors import ConfigError
from common.models import build_model, get_weights

CPU = torch.device("cpu")
BALANCED = [b for b in CLASS_BALANCES if b != "none"]


def test_names_match_the_config_and_unknown_ones_are_refused(tmp_path):
    assert set(CLASS_BALANCES) == {"none", "logit-adjust", "reweight"}
    assert RunConfig().training.class_balance == "none"
    cfg = RunConfig.from_flower(RunConfig().to_flower() | {"class-balance": "logit-adjust"})
    assert cfg.training.class_balance == "logit-adjust"
    with pytest.raises(ConfigError, match="class-balance='focal' is unknown"):
        RunConfig.from_flower(RunConfig().to_flower() | {"class-balance": "focal"})
    with pytest.raises(ConfigError, match="class-balance='focal' is unknown"):
        PrivateTrainer(privacy=PrivacyConfig(), num_rounds=1, local_epochs=1, batch_size=16, num_examples=64,
                       ledger=PrivacyLedger(tmp_path / "l.json"), run_name="r", class_balance="focal")
    assert not (tmp_path / "l.json").exists()  # refused before the ledger is touched
    assert isinstance(make_criterion("none", torch.tensor([0, 1])), nn.CrossEntropyLoss)


def _bias_gradient(mode: str, labels: torch.Tensor) -> float:
    """d loss / d (logit 1 - logit 0) at equal logits, for a model that is only a bias vector: zero
    there means the loss's optimum is the balanced score (equal logits whatever the site's skew)."""
    bias = torch.zeros(2, requires_grad=True)
    make_criterion(mode, labels)(bias.expand(len(labels), 2), labels).backward()
    return float(bias.grad[1] - bias.grad[0]) / 2


def test_a_balanced_loss_learns_the_balanced_score_on_a_skewed_site():
    labels = torch.tensor([1] * 90 + [0] * 10)  # 90 % "pneumonia"
    # plain cross-entropy is pulled hard towards the majority (its optimum: logit gap log 9) ...
    assert _bias_gradient("none", labels) == pytest.approx(-0.4, abs=1e-6)
    # ... a balanced loss is (almost) at its optimum already; what remains is the add-one smoothing
    for mode in BALANCED:
        assert abs(_bias_gradient(mode, labels)) < 0.03, mode
    # the smoothed frequencies, and a class the site never saw keeps a finite log prior
    freq = SiteBalancedLoss("logit-adjust", torch.tensor([1, 1, 1])).class_frequencies(2)
    assert torch.allclose(freq, torch.tensor([1 / 5, 4 / 5], dtype=torch.float64))


def _dp_step(mode: str, x, y, clip: float, ghost: bool) -> torch.Tensor:
    """The update Opacus applies (lr 1, no momentum, no noise) after one step on (x, y)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    loss = make_criterion(mode, y)
    made = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=0.0, max_grad_norm=clip,
        poisson_sampling=False, criterion=loss, grad_sample_mode="ghost" if ghost else "hooks",
    )
    if ghost:
        pm, popt, criterion, ploader = made
    else:
        (pm, popt, ploader), criterion = made, loss
    train_epochs(pm, ploader, epochs=1, optimizer=popt, device=CPU, criterion=criterion)
    return before - pm._module.weight.detach()


@pytest.mark.parametrize("mode", BALANCED)
@pytest.mark.parametrize("ghost", [False, True])
def test_dp_sgd_clips_each_examples_gradient_of_the_balanced_loss(mode, ghost):
    torch.manual_seed(1)
    x, y = torch.randn(6, 3) * 3, torch.tensor([1, 1, 1, 1, 1, 0])  # skewed batch
    clip = 0.5
    got = _dp_step(mode, x, y, clip, ghost)

    # by hand: example i's gradient of its own balanced loss, clipped (weight and bias together)
    # to `clip`, summed, divided by the batch size; and the same with plain cross-entropy
    torch.manual_seed(0)
    ref = nn.Linear(3, 2)
    loss = make_criterion(mode, y)
    expected, plain = torch.zeros_like(ref.weight), torch.zeros_like(ref.weight)
    for fn, acc in ((loss, expected), (nn.CrossEntropyLoss(), plain)):
        for i in range(len(x)):
            ref.zero_grad()
            fn(ref(x[i : i + 1]), y[i : i + 1]).backward()
            gw, gb = ref.weight.grad, ref.bias.grad
            norm = float(torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum()))
            assert norm * min(1.0, clip / (norm + 1e-6)) <= clip + 1e-6  # no example contributes more than clip
            acc += gw * min(1.0, clip / (norm + 1e-6))
    expected /= len(x)
    plain /= len(x)
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
    assert not torch.allclose(got, plain, atol=1e-3)  # the balanced loss reached the training step


def test_epsilon_and_ledger_do_not_depend_on_the_class_balance(tmp_path):
    rng = np.random.default_rng(0)
    n = 64
    labels = (rng.random(n) < 0.9).astype(np.int64)  # a skewed site
    split = Split(torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32)), torch.from_numpy(labels))
    out, weights = {}, {}
    for mode in CLASS_BALANCES:
        torch.manual_seed(0)
        ledger = PrivacyLedger(tmp_path / f"ledger-{mode}.json")
        t = PrivateTrainer(privacy=PrivacyConfig(epsilon=4.0), num_rounds=2, local_epochs=1, batch_size=16,
                           num_examples=n, ledger=ledger, run_name="run", class_balance=mode)
        model = build_model("mlp", (6,), 2)
        r = t.train_round(model, split, device=CPU)
        out[mode] = (t.noise_multiplier, t.sample_rate, r.steps, r.epsilon, list(ledger.entry("run").history))
        weights[mode] = get_weights(model)
    assert out["none"] == out["logit-adjust"] == out["reweight"]
    for mode in BALANCED:  # the setting reached the site's training
        assert any(not np.allclose(a, b) for a, b in zip(weights["none"], weights[mode]))


def test_the_non_private_trainer_uses_the_balanced_loss_too():
    rng = np.random.default_rng(1)
    split = Split(torch.from_numpy(rng.normal(size=(80, 4)).astype(np.float32)),
                  torch.from_numpy((rng.random(80) < 0.9).astype(np.int64)))
    weights = {}
    for mode in ("none", "logit-adjust"):
        torch.manual_seed(0)
        model = build_model("mlp", (4,), 2)
        NonPrivateTrainer(local_epochs=1, batch_size=16, num_examples=80, learning_rate=0.1,
                          class_balance=mode).train_round(model, split, device=CPU)
        weights[mode] = get_weights(model)
    assert any(not np.allclose(a, b) for a, b in zip(weights["none"], weights["logit-adjust"]))
