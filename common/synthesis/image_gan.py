"""The image half of synthesis: a small conditional DCGAN for 28x28 grey images (PneumoniaMNIST-like).

* `ImageEncoder`: pixels in [0, 1] (what medfed's loaders give) <-> [-1, 1] (the generator's
  tanh range) by the fixed map 2x - 1. No site statistic (mean, std, clip bound) is used, so the
  encoding is public and identical at every site and at the server, as the table encoder is.
* `ImageGenerator`: (noise, one-hot class) -> image, Linear to 7x7 then two transposed
  convolutions (7 -> 14 -> 28) with GroupNorm. It is never run through Opacus, but GroupNorm
  rather than BatchNorm keeps it free of running statistics that FedAvg would average blindly.
* `ImageDiscriminator`: image -> (logit of "real", class logits), an AC-GAN discriminator of
  Opacus-supported layers only (Conv2d, GroupNorm, LeakyReLU, Linear). It is deliberately small
  (~14k parameters at the default width): DP-SGD adds noise of the same norm to every
  coordinate, so the noise's share of the update grows with the number of noised parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.errors import DataError
from common.synthesis.gan import ConditionalGAN

IMAGE_SHAPE = (1, 28, 28)
IMAGE_LATENT = 64
GEN_WIDTH = 32  # channels of the generator's 7x7 map (then 16 at 14x14)
DISC_WIDTH = 16  # channels of the discriminator's first convolution (then 32)


class ImageEncoder:
    """[0, 1] images (n, 1, 28, 28) <-> the GAN's [-1, 1]; checks shape and range, never clips."""

    shape = IMAGE_SHAPE

    def check(self, x: np.ndarray, where: str) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise DataError(
                f"{where} holds images of shape {tuple(x.shape[1:])} (channels, height, width); the image "
                f"generator makes {self.shape[1]}x{self.shape[2]} grey images {self.shape}.",
                "resize the images to 28x28 and convert them to one grey channel (as MedMNIST's 28-pixel files "
                "are) before synthesising.",
            )
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(
                f"{where} has pixel values in [{float(x.min()):.3g}, {float(x.max()):.3g}]; images must lie in [0, 1].",
                "load the images with medfed's loaders (uint8 0..255 or floats in [0, 1]).",
            )

    def encode(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) * 2.0 - 1.0)

    def decode(self, enc: np.ndarray) -> np.ndarray:
        """Generator outputs in [-1, 1] -> uint8 (n, 28, 28), the MedMNIST layout."""
        return np.round((np.clip(enc, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).reshape(len(enc), *self.shape[1:])


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels)


class ImageGenerator(nn.Module):
    """(noise z, one-hot class) -> (n, 1, 28, 28) image in [-1, 1]. Its inputs are random noise
    and a class chosen by the trainer: never an image."""

    def __init__(self, num_classes: int, latent: int = IMAGE_LATENT, width: int = GEN_WIDTH) -> None:
        super().__init__()
        self.latent = latent
        self.width = width
        self.project = nn.Sequential(nn.Linear(latent + num_classes, width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            _gn(width),
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1), _gn(width // 2), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(width // 2, 1, 4, stride=2, padding=1), nn.Tanh(),  # 28x28
        )  # fmt: skip

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, cond], dim=1)).view(-1, self.width, 7, 7)
        return self.net(h)


class ImageDiscriminator(nn.Module):
    """(n, 1, 28, 28) -> (logit of "real", class logits): two strided convolutions (28 -> 14 -> 7)
    with GroupNorm and a linear head (AC-GAN, as the table discriminator)."""

    def __init__(self, num_classes: int, width: int = DISC_WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), _gn(2 * width), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1 + num_classes),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(images)
        return out[:, 0], out[:, 1:]


class ImageGAN(ConditionalGAN):
    """Conditional DCGAN (generator + discriminator) for 28x28 grey images."""

    def __init__(self, num_classes: int, gen_width: int = GEN_WIDTH, disc_width: int = DISC_WIDTH) -> None:
        super().__init__(num_classes)
        self.generator = ImageGenerator(num_classes, width=gen_width)
        self.discriminator = ImageDiscriminator(num_classes, width=disc_width)
