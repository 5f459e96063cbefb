"""client/augmentation.py and augmentation multiplicity in client/training.py: augmented images keep
their shape and label and are reproducible under a seed; under DP-SGD each example's clipped
gradient is the mean of its K copies' gradients (not K separately clipped copies); and the privacy
spent does not depend on K."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.augmentation import make_augment, random_affine
from client.privacy.ledger import PrivacyLedger
from client.privacy.private_trainer import PrivateTrainer
from client.training import train_epochs
from common.config import AUGMENTATIONS, PrivacyConfig, RunConfig
from common.datasets.contract import Split
from common.errors import ConfigError
from common.models import build_model

CPU = torch.device("cpu")


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 28, 28), generator=g)


def test_affine_keeps_shape_and_is_deterministic_under_a_seed():
    x = images()
    a = make_augment("affine", seed=3)(x)
    b = make_augment("affine", seed=3)(x)
    c = make_augment("affine", seed=4)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)  # it does change the images
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0  # bilinear + border padding stay in range


def test_affine_is_a_mild_geometric_change_that_keeps_the_content():
    """A centred blob stays roughly where it was (shift <= 10 %, rotation <= 10 degrees, scale
    0.9-1.1), so the label (what the image shows) is preserved; every image draws its own change."""
    x = torch.zeros((32, 1, 28, 28))
    x[:, :, 10:18, 10:18] = 1.0
    out = random_affine(x, torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = out[:, 0].sum(dim=(1, 2))
    cy = (out[:, 0] * ys).sum(dim=(1, 2)) / mass
    cx = (out[:, 0] * xs).sum(dim=(1, 2)) / mass
    assert torch.all((cy - 13.5).abs() <= 0.1 * 28 + 1) and torch.all((cx - 13.5).abs() <= 0.1 * 28 + 1)
    assert torch.all((mass / 64 - 1).abs() < 0.3)  # area changes by at most ~1.1^2
    assert len({round(float(v), 3) for v in cx}) > 20  # per-image parameters, not one per batch


def test_augmentation_names_match_the_config_and_bad_input_is_refused():
    assert set(AUGMENTATIONS) == {"auto", "none", "affine"}
    assert make_augment("none") is None
    signals, table = torch.randn(4, 1, 140), torch.randn(4, 10)
    assert make_augment("auto")(signals) is signals and make_augment("auto")(table) is table
    x = images()
    assert torch.equal(make_augment("auto", seed=1)(x), make_augment("affine", seed=1)(x))
    with pytest.raises(ConfigError, match="unknown"):
        make_augment("hflip")
    with pytest.raises(ConfigError, match="augmentation='none'"):
        random_affine(torch.zeros((4, 140)))


def test_config_refuses_multiplicity_without_augmentation_or_with_ghost_clipping():
    base = RunConfig().to_flower()
    with pytest.raises(ConfigError, match="augmentation-multiplicity=4 repeats identical copies"):
        RunConfig.from_flower(base | {"augmentation": "none", "augmentation-multiplicity": 4, "clipping": "flat"})
    with pytest.raises(ConfigError, match="needs clipping='flat'"):
        RunConfig.from_flower(base | {"augmentation": "affine", "augmentation-multiplicity": 4})
    cfg = RunConfig.from_flower(base | {"augmentation": "affine", "augmentation-multiplicity": 4, "clipping": "flat"})
    assert cfg.training.augmentation_multiplicity == 4
    assert RunConfig().training.augmentation == "auto"  # the default since the accuracy benchmark (BENCHMARKS.md 4a)
    # client-level DP trains plain (no per-example clipping): ghost is irrelevant there
    RunConfig.from_flower(base | {"augmentation": "affine", "augmentation-multiplicity": 2, "privacy-mode": "client-dp"})


class _Fixed:
    """A deterministic 'augmentation' for the gradient test: copy k of each example is scaled by
    SCALES[k], so the expected gradient can be computed by hand."""

    SCALES = torch.tensor([1.0, -2.0, 3.0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.SCALES)
        return x * self.SCALES.repeat(x.shape[0] // k).view(-1, *([1] * (x.dim() - 1)))


def _dp_step_gradient(multiplicity_mean: bool, x, y, clip: float) -> torch.Tensor:
    """The gradient Opacus applies (lr 1, no momentum, no noise) after one step on (x, y)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    engine = PrivacyEngine(accountant="rdp")
    pm, popt, ploader = engine.make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=0.0, max_grad_norm=clip,
        poisson_sampling=False, grad_sample_mode="hooks",
    )
    k = len(_Fixed.SCALES)
    train_epochs(pm, ploader, epochs=1, optimizer=popt, device=CPU, augment=_Fixed(),
                 multiplicity=k if multiplicity_mean else 1)
    return before - pm._module.weight.detach()


def test_multiplicity_clips_the_mean_of_each_examples_copies():
    torch.manual_seed(1)
    x, y = torch.randn(4, 3) * 3, torch.tensor([0, 1, 1, 0])
    clip = 0.5
    got = _dp_step_gradient(True, x, y, clip)

    # by hand: per example, the mean of the weight gradients of its K scaled copies, clipped
    # (over all parameters: weight and bias) to `clip`, summed, divided by the batch size
    torch.manual_seed(0)
    ref = nn.Linear(3, 2)
    expected = torch.zeros_like(ref.weight)
    alternative = torch.zeros_like(ref.weight)  # every copy clipped on its own (what must NOT happen)
    for i in range(len(x)):
        copies = []
        for s in _Fixed.SCALES:
            ref.zero_grad()
            nn.functional.cross_entropy(ref(x[i : i + 1] * s), y[i : i + 1]).backward()
            copies.append((ref.weight.grad.clone(), ref.bias.grad.clone()))
        gw = torch.stack([c[0] for c in copies]).mean(0)
        gb = torch.stack([c[1] for c in copies]).mean(0)
        norm = torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum())
        expected += gw * min(1.0, clip / (float(norm) + 1e-6))
        for cw, cb in copies:
            n = torch.sqrt(cw.pow(2).sum() + cb.pow(2).sum())
            alternative += cw * min(1.0, clip / (float(n) + 1e-6)) / len(_Fixed.SCALES)
    expected /= len(x)
    alternative /= len(x)
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
    assert not torch.allclose(got, alternative, atol=1e-3)  # the test tells the two rules apart


def test_multiplicity_with_ghost_clipping_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="clipping='flat'"):
        PrivateTrainer(privacy=PrivacyConfig(), num_rounds=1, local_epochs=1, batch_size=16, num_examples=64,
                       ledger=PrivacyLedger(tmp_path / "l.json"), run_name="r", augmentation="affine", multiplicity=2)


def test_epsilon_and_ledger_do_not_depend_on_multiplicity(tmp_path):
    rng = np.random.default_rng(0)
    n = 64
    split = Split(torch.from_numpy(rng.random((n, 1, 28, 28), dtype=np.float32)),
                  torch.from_numpy(rng.integers(0, 2, n)))
    out = {}
    for k in (1, 3):
        torch.manual_seed(0)
        ledger = PrivacyLedger(tmp_path / f"ledger-{k}.json")
        t = PrivateTrainer(privacy=PrivacyConfig(epsilon=4.0, clipping="flat"), num_rounds=2, local_epochs=1,
                           batch_size=16, num_examples=n, ledger=ledger, run_name="run",
                           augmentation="affine", multiplicity=k)
        model = build_model("cnn", (1, 28, 28), 2, width=8)
        r = t.train_round(model, split, device=CPU)
        entry = ledger.entry("run")
        out[k] = (t.noise_multiplier, t.sample_rate, r.steps, r.epsilon, list(entry.history))
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert out[1] == out[3]
