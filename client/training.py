"""Plain PyTorch training and evaluation loops, shared by private and non-private training.

`train_epochs` does not care whether it gets a plain model/optimizer/loader or the ones
Opacus' `make_private` returns: with ghost clipping the caller passes the wrapped criterion
(whose `backward()` runs Opacus' two passes), and Poisson sampling may yield empty batches,
which still take a (noise-only) optimizer step so that the accountant's step count holds.

FedProx: the proximal gradient mu * (w - w_global) is added to the gradient the optimizer is
about to apply. For a DP optimizer it is added *after* clipping and noising (in Opacus'
step hook): the term does not depend on any example, so adding it there is post-processing and
keeps the DP guarantee exact. Putting (mu/2)||w - w_global||^2 into the loss instead would be
silently dropped by Opacus' hooks mode (it rebuilds the gradient from per-sample gradients) and
would be mixed into the per-example clipping by ghost clipping.

Augmentation multiplicity (`multiplicity` K > 1): every example of a batch is repeated K times
(consecutive rows) and each copy augmented on its own. Without DP the mean loss over the K*B rows
is already the mean over examples of the mean over their copies. Under DP-SGD (Opacus hooks
mode) the K rows' per-sample gradients are averaged into one row per example *before* the
optimizer clips them, so an example's contribution stays bounded by max-grad-norm whatever K is,
and the sampler and accountant never see the copies: epsilon does not depend on K.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from torch import nn

from common.errors import ModelMismatchError
from common.models import unwrap_model

Progress = Callable[[int, float], None]  # (epoch number from 1, mean loss of that epoch)


def resolve_schedule(schedule: str, modality: str) -> str:
    """The schedule `learning-rate-schedule` names for the dataset's modality, decided like
    `resolve_model_name`: "auto" is "cosine" for images and "constant" for signals, tables and
    text, as the accuracy benchmark found (docs/BENCHMARKS.md 4a: cosine helps PneumoniaMNIST,
    hurt heart disease)."""
    if schedule != "auto":
        return schedule
    return "cosine" if modality == "image" else "constant"


def round_learning_rate(base: float, schedule: str, server_round: int, num_rounds: int) -> float:
    """The local learning rate of round `server_round` (from 1) of `num_rounds`. "cosine" decays
    it from `base` in round 1 along half a cosine (never to 0: round R gets base * (1 + cos(pi (R-1)/R)) / 2):
    late rounds then average the noise of more steps into smaller moves, which DP-SGD needs to settle."""
    if schedule == "constant" or num_rounds <= 1:
        return base
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    r = min(max(server_round, 1), num_rounds)
    return base * 0.5 * (1.0 + math.cos(math.pi * (r - 1) / num_rounds))


def make_optimizer(model: nn.Module, lr: float, momentum: float) -> torch.optim.SGD:
    """SGD with momentum: momentum and input normalisation are what make DP-SGD train well here."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


class _Proximal:
    """Adds mu * (w - w_global) to each parameter's gradient (the FedProx term's gradient)."""

    def __init__(self, model: nn.Module, global_weights: Sequence[np.ndarray], mu: float, device: torch.device) -> None:
        plain = unwrap_model(model)
        state = plain.state_dict()
        if len(global_weights) != len(state):
            raise ModelMismatchError(
                f"FedProx got {len(global_weights)} global weight arrays for a model with {len(state)} entries.",
                "pass the global weights exactly as received from the server (state-dict order).",
            )
        by_name = dict(zip(state.keys(), global_weights))
        self.mu = mu
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, p in plain.named_parameters():
            if not p.requires_grad:
                continue
            g = torch.as_tensor(np.asarray(by_name[name]), dtype=p.dtype, device=device)
            if g.shape != p.shape:
                raise ModelMismatchError(
                    f"FedProx global weight {name} has shape {tuple(g.shape)}, the model has {tuple(p.shape)}.",
                    "pass the global weights exactly as received from the server (state-dict order).",
                )
            self.pairs.append((p, g))

    @torch.no_grad()
    def add_to_gradients(self) -> None:
        for p, g in self.pairs:
            term = self.mu * (p - g)
            if p.grad is None:
                p.grad = term.clone()
            else:
                p.grad.add_(term)


def average_grad_samples(model: nn.Module, multiplicity: int) -> None:
    """Replace each parameter's per-sample gradients (K*B rows, an example's K copies
    consecutive) by their mean over each example's copies (B rows), before Opacus clips them."""
    for p in model.parameters():
        gs = getattr(p, "grad_sample", None)
        if gs is None:
            continue
        if isinstance(gs, list):  # Opacus keeps a list only when batches are accumulated
            raise ValueError("augmentation multiplicity does not support gradient accumulation.")
        if gs.shape[0] % multiplicity:
            raise ValueError(f"{gs.shape[0]} per-sample gradients are not a multiple of multiplicity {multiplicity}.")
        p.grad_sample = gs.reshape(gs.shape[0] // multiplicity, multiplicity, *gs.shape[1:]).mean(dim=1)


def _batches(loader: Iterable, device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def train_epochs(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    proximal_mu: float = 0.0,
    global_weights: Sequence[np.ndarray] | None = None,
    criterion: Callable | None = None,
    progress: Progress | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    multiplicity: int = 1,
) -> float:
    """Train for `epochs` passes over `loader`; return the mean loss per example over all epochs.

    `criterion` defaults to cross-entropy; with Opacus ghost clipping pass the criterion that
    `make_private` returned. `proximal_mu > 0` needs `global_weights` (state-dict order).
    `augment` transforms each (repeated) batch; `multiplicity` K > 1 needs `augment` and, with a
    DP optimizer, per-sample gradients (hooks mode), not ghost clipping (see module docstring).
    """
    criterion = criterion or nn.CrossEntropyLoss()
    if multiplicity < 1 or (multiplicity > 1 and augment is None):
        raise ValueError(f"multiplicity={multiplicity} needs an augmentation and must be >= 1.")
    prox = None
    if proximal_mu > 0:
        if global_weights is None:
            raise ValueError("proximal_mu > 0 needs the global weights the round started from.")
        prox = _Proximal(model, global_weights, proximal_mu, device)
    is_dp = isinstance(optimizer, DPOptimizer)
    if multiplicity > 1 and isinstance(optimizer, DPOptimizerFastGradientClipping):
        raise ValueError("augmentation multiplicity needs per-sample gradients (clipping='flat'), not ghost clipping.")
    previous_hook = optimizer.step_hook if is_dp else None
    if prox is not None and is_dp:
        # after clip + noise + scale, before the underlying SGD step (see module docstring)
        def hook(opt: DPOptimizer) -> None:
            prox.add_to_gradients()
            if previous_hook is not None:
                previous_hook(opt)

        optimizer.attach_step_hook(hook)

    model.train()
    total_loss, total_n = 0.0, 0
    try:
        with warnings.catch_warnings():
            # Opacus' backward hooks on the first layer trigger this harmless PyTorch notice.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for epoch in range(1, epochs + 1):
                epoch_loss, epoch_n = 0.0, 0
                for x, y in _batches(loader, device):
                    optimizer.zero_grad(set_to_none=True)
                    if multiplicity > 1:
                        x, y = x.repeat_interleave(multiplicity, dim=0), y.repeat_interleave(multiplicity, dim=0)
                    if augment is not None:
                        x = augment(x)
                    loss = criterion(model(x), y)
                    loss.backward()
                    if multiplicity > 1 and is_dp:
                        average_grad_samples(model, multiplicity)
                    if prox is not None and not is_dp:
                        prox.add_to_gradients()
                    optimizer.step()
                    if len(y):  # Poisson sampling can draw an empty batch (its loss is NaN)
                        examples = len(y) // multiplicity
                        epoch_loss += float(loss.item()) * examples
                        epoch_n += examples
                total_loss, total_n = total_loss + epoch_loss, total_n + epoch_n
                if progress is not None:
                    progress(epoch, epoch_loss / epoch_n if epoch_n else float("nan"))
    finally:
        if is_dp:
            optimizer.step_hook = previous_hook
    return total_loss / total_n if total_n else float("nan")
