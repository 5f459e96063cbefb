"""The conditional GANs of a synthesis run: generator and discriminator in one `nn.Module`.

One module so that everything a training run does with weights works unchanged: one weight
vector in state-dict order (`common.models.get_weights`), SecAgg+ masking of the whole update,
FedAvg of both halves. `ConditionalGAN` is the contract the GAN trainer relies on (a generator
of (noise, one-hot class), an auxiliary-classifier discriminator); `TabularGAN` here and
`ImageGAN` (common/synthesis/image_gan.py) fill it. Built only from Opacus-supported layers
(Linear, LeakyReLU, ReLU): the discriminator is trained with per-sample gradients, and no
BatchNorm mixes a batch's rows.
"""

from __future__ import annotations

import torch
from torch import nn

from common.synthesis.encoding import TableEncoder

LATENT = 32
HIDDEN = 128
# The discriminator is smaller than the generator: DP-SGD's noise grows with the square root of
# the number of noised parameters, while the generator's parameters are never noised.
DISC_HIDDEN = 64


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
    """Encoded row -> (logit of "real", class logits): an auxiliary-classifier discriminator
    (AC-GAN). Its class head, trained on real rows under DP-SGD, is how the generator learns
    what separates the classes; a discriminator that only sees the condition as an input gives
    the generator too weak a label signal once DP noise is added (docs/BENCHMARKS.md 4b)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = DISC_HIDDEN) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1 + num_classes),
        )  # fmt: skip

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(rows)
        return out[:, 0], out[:, 1:]


class ConditionalGAN(nn.Module):
    """What the GAN trainer (client/privacy/gan_trainer.py) needs of a synthesis model:

    * `generator(z, cond)`: noise (n, `generator.latent`) and one-hot classes -> samples, in
      the encoding the site's rows are given to the discriminator in;
    * `discriminator(samples)` -> (logit of "real" (n,), class logits (n, num_classes));
    * `num_classes`. `forward` is not used in training."""

    generator: nn.Module
    discriminator: nn.Module

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.generator(z, cond)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encoded samples for the given class labels (noise from `generator`)."""
        z = torch.randn(len(labels), self.generator.latent, generator=generator)
        cond = nn.functional.one_hot(labels, self.num_classes).float()
        return self.generator(z, cond)


class TabularGAN(ConditionalGAN):
    """Conditional tabular GAN: an MLP generator of encoded rows and an AC-GAN MLP discriminator."""

    def __init__(self, encoder: TableEncoder, num_classes: int) -> None:
        super().__init__(num_classes)
        self.generator = Generator(encoder, num_classes)
        self.discriminator = Discriminator(encoder.dim, num_classes)
