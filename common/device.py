"""Where tensors live: the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

from common.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; `cpu`/`cuda` explicitly (`cuda:1` picks a GPU).

    Asking for a GPU on a machine without one is an error rather than a silent fallback:
    a site that planned for GPU speed should learn it is running on the CPU.
    """
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={preference!r} was requested but no CUDA GPU is available on this machine.",
                "use device=auto or device=cpu, or install a CUDA build of PyTorch and the GPU driver.",
            )
        index = pref.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(
                f"device={preference!r} names a GPU that does not exist ({torch.cuda.device_count()} visible).",
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1} or device=auto.",
            )
        return torch.device(pref)
    raise ConfigError(f"device={preference!r} is unknown.", f"use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
