"""A finished run folder, read back: its documents, and its report regenerated from them.

`medfed report RUN_DIR` uses this to rebuild report.html and the plots after a change to the
report (or from a folder copied elsewhere) without running anything again. It calls the same
entry points a run ends with (server/report.py: write_plots, write_report) on the folder's own
metrics.json, privacy.json and global_model.json, so the numbers cannot differ from the run's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError
from server.report import PLOTS, write_plots, write_report


@dataclass(frozen=True)
class RunFolder:
    path: Path
    metrics: dict
    privacy: dict
    run_config: dict
    meta: dict

    @property
    def name(self) -> str:
        return str(self.run_config.get("run-name") or self.path.name)


def _json(path: Path, required: bool) -> dict:
    if not path.exists():
        if required:
            raise DataError(
                f"{path.parent} is not a finished medfed run folder: {path.name} is missing.",
                "pass the folder a run wrote (it holds metrics.json and privacy.json), e.g. runs/sim-20260101-120000.",
            )
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path} cannot be read as JSON: {err}", "restore the file from the run, or rerun it.") from err


def read_run_folder(path: Path) -> RunFolder:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder.", "pass a run folder, e.g. runs/sim-20260101-120000.")
    metrics = _json(path / "metrics.json", True)
    if not metrics.get("rounds"):
        raise DataError(f"{path / 'metrics.json'} records no round.", "pass the folder of a run that completed a round.")
    config = _json(path / "run-config.json", False) or _flat_config(metrics.get("config", {}))
    return RunFolder(path, metrics, _json(path / "privacy.json", True), config, _json(path / "global_model.json", False))


def _flat_config(nested: dict) -> dict:
    """metrics.json's config, flattened, for a folder without run-config.json."""
    out: dict = {}
    for section, values in nested.items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def regenerate_report(path: Path) -> Path:
    """Rewrite report.html (and the plots it embeds) of a finished run folder."""
    run = read_run_folder(path)
    plots = write_plots(run.path, run.metrics, run.privacy, None)  # the ROC points are not kept...
    roc = run.path / PLOTS["roc"]
    if "roc" not in plots and roc.exists():
        plots["roc"] = roc  # ...so the run's own ROC plot is reused
    return write_report(run.path, run.metrics, run.privacy, plots, run.meta)
