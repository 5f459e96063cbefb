"""What `medfed client start` settles before anything connects: the site's data is usable,
and no other daemon already runs for the same state folder (pid file).

The data is loaded exactly as the site's ClientApp will load it (client/site.py) and run
through the same dataset checks as `medfed data check`, so a hospital learns about a bad export
at its own console, with the fix, and not as a failed round on the server.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from client.daemon.site_config import SiteConfig
from common.atomic import atomic_write_text
from common.errors import ConfigError, DataError
from common.ops.supervise import pid_alive

# --------------------------------------------------------------------------- data


def validate_data(config: SiteConfig) -> tuple[SiteConfig, str]:
    """Load the site's data exactly as its ClientApp will and run the dataset checks.

    Returns the config with the data format resolved, and a one-line summary."""
    from client.privacy.private_trainer import MIN_PRIVATE_EXAMPLES
    from common.datasets.check import check_dataset, site_problems

    if config.data_path is not None:
        from common.datasets.hospital import infer_format, load_hospital

        fmt = config.data_format or infer_format(config.data_path)
        ds = load_hospital(config.data_path, fmt, site_name=config.name,
                           label_column=config.label_column, text_column=config.text_column)
        site = next(iter(ds.sites.values()))
        problems = check_dataset(ds)
        config = dataclasses.replace(config, data_format=fmt)
        where = f"{config.data_path} ({fmt})"
    else:
        from common.config import DataConfig
        from common.datasets.federated import load_federated

        # What client/site.py loads for `dataset` + `dataset-site`: the dataset's natural sites.
        ds = load_federated(DataConfig(dataset=config.dataset, partition="natural"))
        site = ds.site(config.dataset_site)
        problems = site_problems(ds, config.dataset_site)
        where = f"built-in {config.dataset}, site {config.dataset_site}"
    if problems:
        raise DataError(
            f"The data of site {config.name} ({where}) failed the checks:\n  - " + "\n  - ".join(problems),
            "fix the data (see `medfed data check`), then start the client again.",
        )
    if len(site.train) < MIN_PRIVATE_EXAMPLES:
        raise DataError(
            f"Site {config.name} has {len(site.train)} training examples ({where}); DP-SGD needs at least "
            f"{MIN_PRIVATE_EXAMPLES}.",
            "add data, or leave this site out of the federation.",
        )
    counts = " ".join(str(c) for c in site.train.class_counts(ds.num_classes))
    return config, f"{where}: {len(site.train)} training rows (classes {counts}), {len(site.test)} test rows"


# --------------------------------------------------------------------------- pid file


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def daemon_alive(pid: int) -> bool:
    """Is `pid` a live `medfed client start`? (The cmdline check guards against PID reuse.)"""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"client" in args and b"start" in args


def acquire_pid_file(path: Path) -> None:
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and daemon_alive(pid):
        raise ConfigError(
            f"A medfed client for this state-dir is already running (pid {pid}, {path}).",
            "stop it first (systemctl stop medfed-client, or kill that pid), or use another state-dir.",
        )
    atomic_write_text(path, f"{os.getpid()}\n")


def release_pid_file(path: Path) -> None:
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)
