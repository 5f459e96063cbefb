"""Where built-in datasets live: one data directory, chosen the same way by every command.

``--data-dir`` (an explicit argument) wins, then ``$MEDFED_DATA_DIR``, then
``~/.cache/medfed/datasets``. Each dataset keeps its files in its own folder below it (see
`common.datasets.download`), so one shared, verified copy serves every run on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MEDFED_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/medfed/datasets")


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (CLI ``--data-dir``) wins, then ``$MEDFED_DATA_DIR``,
    then ``~/.cache/medfed/datasets``. The folder does not have to exist yet."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR.expanduser()
