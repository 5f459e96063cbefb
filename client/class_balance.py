"""A site's training loss corrected for its own class frequencies (label skew).

Under label skew a hospital's data can be 99 % one class (PneumoniaMNIST, Dirichlet 0.5, seed 0:
the largest site holds 66 % of the images at 99 % pneumonia). Plain cross-entropy there learns
"always pneumonia", and FedAvg's example-weighted mean follows that site. Each site can correct
its own loss from its own class counts, computed on site from its training split; nothing extra
leaves the site.

* "logit-adjust" (Menon et al. 2021, "Long-tail learning via logit adjustment"; in federated
  learning FedLC, Zhang et al. 2022): train on cross-entropy of `logits + log(prior)`, where
  `prior` is the site's class frequency; predict with the plain logits. The model is pushed to
  learn the *balanced* score (the logit minus the site's log prior), which is the same target at
  every site whatever its skew, so the sites' updates agree instead of pulling towards their own
  majority class. Examples of the majority class get small gradients, the minority large ones;
  this changes the gradient's *direction*, so DP-SGD's clipping (which caps every example's
  gradient norm at max-grad-norm) does not undo it.
* "reweight": cross-entropy with example weight n / (classes * n_class), mean 1 over the site's
  examples. Under DP-SGD a weight only scales an example's gradient before clipping, and an
  example whose gradient is already above max-grad-norm is clipped to the same norm whatever its
  weight: the correction is partly undone by clipping (kept to be measured against, see
  docs/BENCHMARKS.md 4a).

Counts get add-one (Laplace) smoothing, so a class a site never saw has a finite log prior.

Both losses are per-example: example i's loss depends on its own input and label (and the site's
class counts), never on the other examples of its batch. Opacus clips each example's gradient of
that loss to max-grad-norm, so the sampler, the clipping bound and the noise, hence the accountant
and epsilon, are exactly those of plain cross-entropy (tests/test_class_balance.py). The class
counts themselves are a statistic of the site's data that epsilon does not cover: see
docs/PRIVACY.md, "Class-balanced loss".

`reduction` follows `nn.CrossEntropyLoss` ("mean": the plain mean over the batch's examples, so
Opacus' per-sample gradients in hooks mode are exact; "none" is what ghost clipping sets while it
computes the per-example losses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.config import CLASS_BALANCES
from common.errors import ConfigError


class SiteBalancedLoss(nn.Module):
    """Cross-entropy corrected by the class counts of one site's training labels (see module docstring)."""

    def __init__(self, mode: str, labels: torch.Tensor, *, reduction: str = "mean") -> None:
        super().__init__()
        if mode not in CLASS_BALANCES or mode == "none":
            raise ConfigError(
                f"class-balance={mode!r} is not a class-balanced loss.",
                f"use one of {', '.join(b for b in CLASS_BALANCES if b != 'none')}, or plain cross-entropy for 'none'.",
            )
        self.mode = mode
        self.reduction = reduction
        self._labels = labels.detach().long().cpu()
        self._cache: dict[tuple[int, str], torch.Tensor] = {}

    def class_frequencies(self, num_classes: int) -> torch.Tensor:
        """The site's smoothed class frequencies, (n_c + 1) / (n + num_classes)."""
        counts = torch.bincount(self._labels, minlength=num_classes)[:num_classes].double()
        return (counts + 1.0) / (counts.sum() + num_classes)

    def _term(self, num_classes: int, device: torch.device) -> torch.Tensor:
        key = (num_classes, str(device))
        if key not in self._cache:
            prior = self.class_frequencies(num_classes)
            # logit-adjust: log prior per class; reweight: 1 / (classes * prior), mean 1 over the site
            term = prior.log() if self.mode == "logit-adjust" else 1.0 / (num_classes * prior)
            self._cache[key] = term.float().to(device)
        return self._cache[key]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        term = self._term(logits.shape[1], logits.device)
        if self.mode == "logit-adjust":
            per_example = F.cross_entropy(logits + term, target, reduction="none")
        else:
            per_example = term[target] * F.cross_entropy(logits, target, reduction="none")
        if self.reduction == "none":
            return per_example
        if self.reduction == "sum":
            return per_example.sum()
        return per_example.mean()


def make_criterion(mode: str, labels: torch.Tensor) -> nn.Module:
    """The training loss a run's `class-balance` setting names, for a site whose training labels
    are `labels` ("none": plain cross-entropy, exactly as before the setting existed)."""
    if mode == "none":
        return nn.CrossEntropyLoss()
    return SiteBalancedLoss(mode, labels)
