"""A side-by-side comparison of finished runs ("DP on vs off", two strategies...), as one HTML page.

Read only from each run folder's own documents (run-config.json, metrics.json, privacy.json),
so a researcher compares runs without writing code and every number can be checked in them:
- the settings that differ between the runs (the rest are listed once);
- the final global metrics, and the final per-hospital metrics as a mean with a 95 % interval
  across hospitals (Student t: how much the hospitals' results spread, not a test-set CI);
- epsilon spent per hospital;
- the global metric per round of every run on one plot.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.privacy import recorded_mode  # noqa: E402
from server.run_folder import RunFolder  # noqa: E402

METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "loss")
_IGNORED = ("out-dir", "run-name")  # differ between any two runs; not a setting of the experiment


def config_differences(runs: Sequence[RunFolder]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(keys whose values differ -> value per run, keys every run shares -> the value)."""
    keys = sorted({k for r in runs for k in r.run_config if k not in _IGNORED})
    differ: dict[str, list[Any]] = {}
    same: dict[str, Any] = {}
    for key in keys:
        values = [r.run_config.get(key, "(unset)") for r in runs]
        if all(v == values[0] for v in values):
            same[key] = values[0]
        else:
            differ[key] = values
    return differ, same


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> tuple[float, float, float] | None:
    """(mean, low, high): a 95 % Student-t interval of the mean, clipped to `bounds`; None
    without values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, mean, mean
    from scipy import stats

    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    half = float(stats.t.ppf(0.975, len(xs) - 1)) * sd / math.sqrt(len(xs))
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def final_epsilon(run: RunFolder) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for site, entry in sorted((run.privacy.get("sites") or {}).items()):
        eps = entry.get("epsilon") or {}
        out[site] = float(eps[max(eps, key=int)]) if eps else None
    return out


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _v(v: Any) -> str:
    """A setting as written (no rounding: delta 1e-4 must not read 0.000)."""
    return html.escape(str(v))


def _plot(runs: Sequence[RunFolder]) -> str:
    key = next(
        (k for k in ("auc", "accuracy") if any(r2.get("global", {}).get(k) is not None for r in runs for r2 in r.metrics["rounds"])),
        "accuracy",
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        pts = [(r["round"], r["global"].get(key)) for r in run.metrics["rounds"] if r.get("global", {}).get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=run.name)
    ax.set(title=f"Global test {key} per round", xlabel="round", ylabel=key)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return f'<img alt="global {key} per round" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _privacy_text(run: RunFolder) -> str:
    name = run.privacy.get("privacy_mode")
    mode = recorded_mode(name)
    secure = "SecAgg+" if (run.privacy.get("secure_aggregation") or {}).get("protocol") else "secure aggregation OFF"
    private = "" if mode is None or mode.private else " (NO differential privacy)"
    return f"{name}{private}; {secure}"


def comparison_html(runs: Sequence[RunFolder]) -> str:
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    differ, same = config_differences(runs)
    rounds_done = [r.metrics["final"].get("round") for r in runs]
    rows = [f"<tr><th>folder</th>{''.join(f'<td>{html.escape(str(r.path))}</td>' for r in runs)}</tr>",
            f"<tr><th>privacy</th>{''.join(f'<td>{html.escape(_privacy_text(r))}</td>' for r in runs)}</tr>",
            f"<tr><th>rounds done</th>{''.join(f'<td>{_f(done)}</td>' for done in rounds_done)}</tr>"]
    diff_rows = "".join(
        f"<tr><th>{html.escape(k)}</th>{''.join(f'<td>{_v(v)}</td>' for v in vals)}</tr>" for k, vals in differ.items()
    ) or f"<tr><td colspan='{len(runs) + 1}'>none: the runs share every setting</td></tr>"
    same_text = ", ".join(f"{html.escape(k)}={_v(v)}" for k, v in same.items())
    metric_rows = []
    for m in METRICS:
        finals = [r.metrics["final"].get("global", {}).get(m) for r in runs]
        bounds = (-math.inf, math.inf) if m == "loss" else (0.0, 1.0)  # a rate's interval stays in [0, 1]
        spreads = [
            mean_interval([s.get(m) for s in r.metrics["final"].get("sites", {}).values() if s.get(m) is not None], bounds)
            for r in runs
        ]
        if all(v is None for v in finals) and all(s is None for s in spreads):
            continue
        metric_rows.append(f"<tr><th>{m} (global)</th>{''.join(f'<td>{_f(v)}</td>' for v in finals)}</tr>")
        cells = "".join(
            f"<td>{_f(s[0])} [{_f(s[1])}, {_f(s[2])}]</td>" if s else "<td>-</td>" for s in spreads
        )
        metric_rows.append(f"<tr><th>{m} (hospitals: mean [95 % interval])</th>{cells}</tr>")
    eps = [final_epsilon(r) for r in runs]
    sites = sorted({s for e in eps for s in e})
    eps_rows = "".join(
        f"<tr><th>{html.escape(s)}</th>{''.join(f'<td>{_f(e.get(s), 2)}</td>' for e in eps)}</tr>" for s in sites
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medfed run comparison</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#f4f4f4}}</style></head><body>
<h1>Comparison of {len(runs)} medfed runs</h1>
<p>Written {time.strftime('%Y-%m-%d %H:%M')} from each folder's run-config.json, metrics.json and privacy.json.</p>
<table><tr><th></th>{head}</tr>{''.join(rows)}</table>
<h2>Settings that differ</h2>
<table><tr><th>setting</th>{head}</tr>{diff_rows}</table>
<p><small>Shared by all: {same_text or '-'}</small></p>
<h2>Final round</h2>
<p>Global = the global model on the central test split (or the example-weighted federated evaluation when there is
none). Hospitals = each hospital's own test split: mean over hospitals with a 95 % Student-t interval, i.e. how much
the hospitals' results spread.</p>
<table><tr><th>metric</th>{head}</tr>{''.join(metric_rows)}</table>
<h2>Privacy spent per hospital (epsilon, final round)</h2>
<table><tr><th>hospital</th>{head}</tr>{eps_rows or f"<tr><td colspan='{len(runs) + 1}'>no epsilon recorded</td></tr>"}</table>
<h2>Learning curves</h2>
{_plot(runs)}
</body></html>
"""


def write_comparison(runs: Sequence[RunFolder], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comparison_html(runs), encoding="utf-8")
    return path
