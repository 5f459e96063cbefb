"""The conditional GAN of a synthesis run: generator and discriminator in one `nn.Module`.

One module so that everything a training run does with weights works unchanged: one weight
vector in state-dict order (`common.models.get_weights`), SecAgg+ masking of the whole update,
FedAvg of both halves. Built only from Opacus-supported layers (Linear, LeakyReLU, ReLU): the
discriminator is trained with per-sample gradients, and no BatchNorm mixes a batch's rows.
"""

from __future__ import annotations

import torch
from torch import nn

from common.synthesis.encoding import TableEncoder

LATENT = 32
HIDDEN = 128


class Generator(nn.Module):
    """(noise z, one-hot class) -> encoded row (softmax per column's modes, tanh offsets).

    Its inputs are random noise and a class chosen by the trainer: never a data row."""

    def __init__(self, encoder: TableEncoder, num_classes: int, latent: int = LATENT, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.encoder = encoder
        self.latent = latent
        self.net = nn.Sequential(
            nn.Linear(latent + num_classes, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, encoder.dim),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.encoder.activate(self.net(torch.cat([z, cond], dim=1)))


class Discriminator(nn.Module):
    """(encoded row, one-hot class) -> logit of "real"."""

    def __init__(self, dim: int, num_classes: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + num_classes, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, rows: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([rows, cond], dim=1)).squeeze(1)


class TabularGAN(nn.Module):
    """Conditional tabular GAN (generator + discriminator); `forward` is not used in training."""

    def __init__(self, encoder: TableEncoder, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.generator = Generator(encoder, num_classes)
        self.discriminator = Discriminator(encoder.dim, num_classes)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.generator(z, cond)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encoded rows for the given class labels (noise from `generator`)."""
        z = torch.randn(len(labels), self.generator.latent, generator=generator)
        cond = nn.functional.one_hot(labels, self.num_classes).float()
        return self.generator(z, cond)
