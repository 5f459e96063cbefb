"""Shared helpers for the benchmark scripts: machine facts, interleaved timing, results files.

Why every speed is a ratio: the benchmark machine is shared (other jobs come and go), so an
absolute time says more about the neighbours than about medfed. Variants are run interleaved
(A B C, B C A, ...) in one process and compared repetition by repetition; the median of those
per-repetition ratios is what the scripts report. Absolute times are kept in the JSON files
for context only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "datasets"


def data_dir() -> str:
    """The shared datasets folder (MEDFED_DATA_DIR, else ../shared/datasets next to the repo)."""
    d = os.environ.get("MEDFED_DATA_DIR") or str(DEFAULT_DATA)
    if not Path(d, "DATASETS.md").is_file():
        sys.exit(f"error: no shared datasets at {d}; set MEDFED_DATA_DIR to the folder holding DATASETS.md.")
    os.environ["MEDFED_DATA_DIR"] = str(Path(d).resolve())  # Ray workers inherit it
    return os.environ["MEDFED_DATA_DIR"]


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (CPU, cores, load, library versions, date)."""
    import flwr
    import opacus
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": loadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "flwr": flwr.__version__,
    }


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


def interleaved(variants: dict[str, Callable[[], Any]], reps: int, *, warmup: int = 1) -> dict[str, list[Any]]:
    """Run every variant `reps` times, rotating their order each repetition, after `warmup`
    untimed rounds of each. Returns, per variant, what each call returned (e.g. the seconds it
    measured itself), or the seconds it took when it returned None."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    out: dict[str, list[Any]] = {n: [] for n in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            started = time.perf_counter()
            reported = variants[name]()
            out[name].append(reported if reported is not None else time.perf_counter() - started)
    return out


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over repetitions of numerator[i] / denominator[i] (same repetition = same load)."""
    return median([a / b for a, b in zip(numerator, denominator) if b > 0])


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the growth exponent k in y ~ x^k."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else math.nan


def nlogn_slope(ns: Sequence[float]) -> float:
    """The log-log slope n*log(n) itself shows over the same n (the 'no faster than n log n' line)."""
    return loglog_slope(ns, [n * math.log(n) for n in ns])


def write_result(name: str, payload: dict[str, Any], *, out: Path | None = None) -> Path:
    """benchmarks/results/<name>.json (small, commit-able)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain-text (also valid Markdown) table."""
    cells = [[_fmt(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        if math.isnan(c):
            return "n/a"
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:.0f}"
    return str(c)


# ----------------------------------------------------------------------------- memory


def _psutil():
    """psutil if installed, else the copy Ray ships, else None (then /proc is read directly)."""
    try:
        import psutil  # type: ignore

        return psutil
    except ImportError:
        pass
    try:
        import psutil  # type: ignore
        import ray  # noqa: F401  (puts ray/thirdparty_files on sys.path)

        return psutil
    except ImportError:
        return None


def _proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _proc_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_pids(root: int) -> list[int]:
    kids = _proc_children()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(kids.get(pid, []))
    return seen


def tree_rss(root: int | None = None) -> tuple[int, int]:
    """(bytes resident, number of processes) of `root` (default: this process) and all its
    descendants: the driver, Ray's GCS/raylet/agents and every Ray worker it started.

    Reads /proc directly (about 10 ms a sample on the reference machine); psutil, when /proc
    is missing, is only the fallback: its recursive children() scans every process on the
    machine and cost ~0.2 s a sample here, a CPU load of its own on a 2-core box."""
    root = root or os.getpid()
    if Path("/proc/self/stat").exists():
        pids = _tree_pids(root)
        return sum(_proc_rss(p) for p in pids), len(pids)
    ps = _psutil()
    if ps is None:
        return 0, 0
    try:
        procs = [ps.Process(root), *ps.Process(root).children(recursive=True)]
    except ps.Error:
        return 0, 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except ps.Error:
            pass
    return total, len(procs)
