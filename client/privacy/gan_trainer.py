"""Local training of a synthesis run's conditional GAN (table or image), with or without DP-SGD.

The steps below use only the `ConditionalGAN` contract (common/synthesis/gan.py): a generator of
(noise, one-hot class) and an auxiliary-classifier discriminator, so the tabular GAN and the
image DCGAN are trained, and privatised, by the same code.

Privacy argument (docs/PRIVACY.md, "Synthetic data"), as the code enforces it:
* **Discriminator** (`_d_step`): the only code that touches the site's rows. It runs through
  Opacus with the PrivateTrainer's own accounting, unchanged: the round's spend is reserved in
  the ledger before any gradient, `make_private` gives Poisson sampling, per-sample clipping to
  max-grad-norm and Gaussian noise, and every optimizer step is one accounted step. Real and
  generated rows go through one forward pass, so every row's gradient (real or generated) is
  clipped on its own; generated rows do not depend on the data, so one real row still moves the
  summed gradient by at most max-grad-norm.
* **Generator** (`_g_step`): its inputs are noise and a class drawn uniformly (never a row or a
  label of the site); its loss is the discriminator's score of its own samples. Its gradient
  therefore depends on the data only through the discriminator's current weights, which are
  outputs of the DP mechanism: post-processing. It is computed with the discriminator's Opacus
  hooks off and the discriminator's parameters frozen, so it adds nothing to the accounting and
  no generator step leaves a gradient on the discriminator.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.privacy.private_trainer import (
    NonPrivateTrainer,
    PrivateTrainer,
    TrainResult,
    _LocalRound,
    _opacus_notices_off,
)
from common.datasets.contract import Split
from common.errors import ConfigError, DataError
from common.synthesis.gan import ConditionalGAN

BETAS = (0.5, 0.9)
# Generator steps per discriminator step: they read no data, so they cost no privacy; only the
# discriminator's steps are accounted.
G_STEPS = 2


class _GANSteps:
    """The two alternating steps; `fake_classes` draws the generator's conditions uniformly."""

    model: ConditionalGAN
    synth_learning_rate: float

    def _gan(self, model: nn.Module) -> ConditionalGAN:
        if not isinstance(model, ConditionalGAN):
            raise ConfigError(
                f"The GAN trainer needs the synthesis model, got {type(model).__name__}.",
                "set task = synthesize for the whole run (server and sites build the model from it).",
            )
        return model

    def _fake(self, gan: ConditionalGAN, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        classes = torch.randint(0, gan.num_classes, (n,), device=device)
        cond = nn.functional.one_hot(classes, gan.num_classes).float()
        z = torch.randn(n, gan.generator.latent, device=device)
        return gan.generator(z, cond), cond

    def _d_step(self, disc: nn.Module, gan: ConditionalGAN, d_opt: torch.optim.Optimizer,
                rows: torch.Tensor, labels: torch.Tensor, n_fake: int) -> float:
        """Discriminator: real rows ("real" + their class) and detached generated rows ("fake"),
        in one pass. The loss is the mean of per-row losses, so Opacus' per-sample gradients are
        each row's own gradient (clipped one by one)."""
        with torch.no_grad():
            fake, _ = self._fake(gan, n_fake, rows.device)
        adv, cls = disc(torch.cat([rows, fake]))
        n_real = len(rows)
        target = torch.cat([torch.ones(n_real), torch.zeros(n_fake)]).to(rows.device)
        per_row = nn.functional.binary_cross_entropy_with_logits(adv, target, reduction="none")
        class_loss = nn.functional.cross_entropy(cls[:n_real], labels, reduction="none")
        per_row = per_row + torch.cat([class_loss, torch.zeros(n_fake, device=rows.device)])
        loss = per_row.mean()
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()
        return float(loss.detach())

    def _g_step(self, gan: ConditionalGAN, g_opt: torch.optim.Optimizer, n: int, device: torch.device) -> None:
        """Generator: look real to the (frozen, already privatised) discriminator and be classified
        as the class it was asked for (non-saturating AC-GAN loss)."""
        disc = gan.discriminator
        frozen = [p.requires_grad for p in disc.parameters()]
        for p in disc.parameters():
            p.requires_grad_(False)
        try:
            fake, cond = self._fake(gan, n, device)
            adv, cls = disc(fake)
            loss = nn.functional.binary_cross_entropy_with_logits(adv, torch.ones(n, device=device))
            loss = loss + nn.functional.cross_entropy(cls, cond.argmax(dim=1))
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            g_opt.step()
        finally:
            for p, f in zip(disc.parameters(), frozen):
                p.requires_grad_(f)

    def _g_optimizer(self, gan: ConditionalGAN) -> torch.optim.Optimizer:
        return torch.optim.Adam(gan.generator.parameters(), lr=self.synth_learning_rate, betas=BETAS)

    def _d_optimizer(self, gan: ConditionalGAN) -> torch.optim.Optimizer:
        return torch.optim.Adam(gan.discriminator.parameters(), lr=self.synth_learning_rate, betas=BETAS)


def _batches(loader: Iterable, device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for xb, yb in loader:
        yield xb.to(device), yb.to(device)


class PrivateGANTrainer(_GANSteps, PrivateTrainer):
    """DP-SGD on the discriminator with PrivateTrainer's ledger reservation and budgets (its
    `_round`, unchanged); only `_train`, what one round does with the data, differs."""

    def __init__(self, *, synth_learning_rate: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.synth_learning_rate = synth_learning_rate

    def _train(self, engine, model: nn.Module, split: Split, local: _LocalRound) -> float:
        gan = self._gan(model)
        gan.to(local.device)
        loader = DataLoader(TensorDataset(split.x, split.y), batch_size=self.batch_size)
        with _opacus_notices_off():
            private_disc, d_opt, dp_loader = engine.make_private(
                module=gan.discriminator,
                optimizer=self._d_optimizer(gan),
                data_loader=loader,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.privacy.max_grad_norm,
                poisson_sampling=True,
                grad_sample_mode="hooks",
            )
        g_opt = self._g_optimizer(gan)
        losses: list[float] = []
        try:
            with warnings.catch_warnings():
                # Opacus' backward hooks note that a batch's inputs need no gradient (rows are
                # data; generated rows are detached): true and intended, not worth a line a step.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                for _ in range(self.local_epochs):
                    for rows, labels in _batches(dp_loader, local.device):
                        losses.append(self._d_step(private_disc, gan, d_opt, rows, labels, self.batch_size))
                        private_disc.disable_hooks()  # the generator's steps are not DP steps
                        try:
                            for _ in range(G_STEPS):
                                self._g_step(gan, g_opt, self.batch_size, local.device)
                        finally:
                            private_disc.enable_hooks()
        finally:
            private_disc.to_standard_module()
            for p in gan.parameters():
                for attr in ("summed_grad", "grad_sample", "_norm_sample"):
                    if hasattr(p, attr):
                        delattr(p, attr)
                p.grad = None
        return sum(losses) / max(len(losses), 1)


class NonPrivateGANTrainer(_GANSteps, NonPrivateTrainer):
    """The same GAN without sample-level DP (privacy-mode none, or client-dp on the whole update)."""

    def __init__(self, *, synth_learning_rate: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.synth_learning_rate = synth_learning_rate

    def _round(self, model: nn.Module, train_split: Split, local: _LocalRound) -> TrainResult:
        if len(train_split) == 0:
            raise DataError("This site has no training rows.", "check the site's data before joining a federation.")
        gan = self._gan(model)
        gan.to(local.device)
        loader = DataLoader(TensorDataset(train_split.x, train_split.y), batch_size=self.batch_size, shuffle=True)
        d_opt, g_opt = self._d_optimizer(gan), self._g_optimizer(gan)
        losses: list[float] = []
        for _ in range(self.local_epochs):
            for rows, labels in _batches(loader, local.device):
                losses.append(self._d_step(gan.discriminator, gan, d_opt, rows, labels, self.batch_size))
                for _ in range(G_STEPS):
                    self._g_step(gan, g_opt, self.batch_size, local.device)
        for p in gan.parameters():
            p.grad = None
        loss = sum(losses) / max(len(losses), 1)
        return TrainResult(loss, None, None, len(losses), None, len(train_split))
