"""Random augmentation of a site's training images, in torch, applied batch by batch.

"affine": each image gets its own random shift (up to 10 % of its side in x and y), rotation
(up to 10 degrees) and scaling (0.9 to 1.1), one `affine_grid` + bilinear `grid_sample` for the
whole batch, edges padded with the border's own pixels. The label is unchanged: these are the
variations between two acquisitions of the same patient (positioning, distance to the detector).

No flips. A chest X-ray is not left-right symmetric (heart, aortic arch and stomach bubble sit on
the patient's left; a mirrored film is the sign of dextrocardia or a mislabelled side), and it is
never upside down; a flipped image is an image no hospital acquires, so flips would teach the
model a distribution it is never asked about. The same holds for most radiographs medfed
targets; a dataset where flips are valid (dermatology, histology) would add its own name here.

Augmentation multiplicity (De et al. 2022, "Unlocking high-accuracy differentially private image
classification through scale"): each example is repeated K times, each copy augmented on its
own; client/training.py averages the K copies' per-example gradients before the clipping, so
under DP-SGD the K copies are one example for sampling, clipping and accounting.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from common.config import AUGMENTATIONS
from common.errors import ConfigError

Augment = Callable[[torch.Tensor], torch.Tensor]

MAX_SHIFT = 0.10  # fraction of the image side
MAX_ROTATION_DEGREES = 10.0
SCALE_RANGE = (0.9, 1.1)


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`x` (n, C, H, W) with an independent random shift, rotation and scaling per image.

    Draws from `generator` (same seed, same batch -> same output); the parameters are drawn on
    the CPU so the result does not depend on the device.
    """
    if x.dim() != 4:
        raise ConfigError(
            f"augmentation='affine' works on images shaped (n, channels, height, width); got a batch of {tuple(x.shape)}.",
            "set augmentation='none' for signals and tables.",
        )
    n = x.shape[0]
    if n == 0:
        return x
    u = torch.rand((n, 4), generator=generator, dtype=torch.float32)
    angle = (2 * u[:, 0] - 1) * math.radians(MAX_ROTATION_DEGREES)
    lo, hi = SCALE_RANGE
    scale = lo + (hi - lo) * u[:, 1]
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of f * side is 2 f there,
    # and sampling the input at 1/scale of the output's coordinates magnifies by `scale`.
    shift = (2 * u[:, 2:] - 1) * (2 * MAX_SHIFT)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def make_augment(name: str, seed: int | None = None) -> Augment | None:
    """The augmentation a run's `augmentation` setting names (None for "none"). With `seed`, its
    own generator makes the sequence of augmented batches reproducible. "auto" augments image
    batches (n, C, H, W) and passes signals (n, C, L) and tables (n, F) through unchanged: the
    registry's models tell the modalities apart by the same shapes."""
    if name not in AUGMENTATIONS:
        raise ConfigError(f"augmentation={name!r} is unknown.", f"use one of {', '.join(AUGMENTATIONS)}.")
    if name == "none":
        return None
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if name == "auto":
        return lambda x: random_affine(x, generator) if x.dim() == 4 else x
    return lambda x: random_affine(x, generator)
