"""Plots and a self-contained HTML report a clinician can read.

Written once, when a run finishes (server/outputs.py), from the content of its metrics.json and
privacy.json, so every number the report shows can be checked against those two files.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.privacy import recorded_mode  # noqa: E402
from common.privacy.mode import NO_SAMPLE_DP_LABEL  # noqa: E402

PLOTS = {
    "learning_curves": "learning_curves.png",
    "roc": "roc_curve.png",
    "epsilon": "epsilon_per_site.png",
}


MAX_LEGEND_SITES = 12  # beyond this, site curves are drawn thin and unlabelled


def _site_style(site: str, n_sites: int) -> dict:
    if n_sites > MAX_LEGEND_SITES:
        return {"lw": 0.6, "alpha": 0.4, "color": "tab:blue"}
    return {"label": site}


def _metric_key(rounds: list[dict]) -> str:
    for key in ("auc", "accuracy"):
        if any(r.get("global", {}).get(key) is not None for r in rounds):
            return key
    return "accuracy"


def plot_learning_curves(metrics: dict, path: Path) -> Path:
    rounds = metrics["rounds"]
    key = _metric_key(rounds)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["round"] for r in rounds if r["global"].get(key) is not None]
    axes[0].plot(xs, [r["global"][key] for r in rounds if r["global"].get(key) is not None], "k-o", lw=2, label="global")
    sites = sorted({s for r in rounds for s in r["sites"]})
    for site in sites:
        pts = [(r["round"], r["sites"][site].get(key)) for r in rounds if site in r["sites"]]
        pts = [(x, y) for x, y in pts if y is not None]
        if pts:
            axes[0].plot(*zip(*pts), "--", marker=".", **_site_style(site, len(sites)))
    axes[0].set(title=f"Test {key.upper() if key == 'auc' else key} per round", xlabel="round", ylabel=key)
    axes[0].legend(fontsize=7, loc="lower right")
    xs = [r["round"] for r in rounds if r["global"].get("loss") is not None]
    axes[1].plot(xs, [r["global"]["loss"] for r in rounds if r["global"].get("loss") is not None], "k-o", lw=2, label="global")
    for site in sites:
        pts = [(r["round"], r["sites"][site].get("loss")) for r in rounds if site in r["sites"]]
        pts = [(x, y) for x, y in pts if y is not None]
        if pts:
            axes[1].plot(*zip(*pts), "--", marker=".", **_site_style(site, len(sites)))
    axes[1].set(title="Test loss per round", xlabel="round", ylabel="cross-entropy")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(roc: dict | None, path: Path) -> Path | None:
    if not roc:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"global model (AUC {roc.get('auc', float('nan')):.3f})")
    ax.plot([0, 1], [0, 1], "k:", label="chance")
    ax.set(title="ROC curve, final global model", xlabel="1 - specificity", ylabel="sensitivity")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_epsilon(privacy: dict, num_rounds: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    drew = False
    sites = privacy.get("sites", {})
    for site, entry in sorted(sites.items()):
        eps = entry.get("epsilon") or {}
        if eps:
            xs = sorted(int(r) for r in eps)
            ax.plot(xs, [eps[str(x)] for x in xs], marker="o", **_site_style(site, len(sites)))
            if entry.get("budget"):
                ax.axhline(entry["budget"], color="grey", ls=":", lw=1)
            drew = True
    if not drew:
        mode = recorded_mode(privacy.get("privacy_mode"))
        msg = "no epsilon recorded" if mode is not None and mode.sample_level else f"{NO_SAMPLE_DP_LABEL} in this run"
        ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes)
    ax.set(title="Privacy spent per site (epsilon)", xlabel="round", ylabel="epsilon", xlim=(0, max(num_rounds, 1) + 0.5))
    if drew and len(sites) <= MAX_LEGEND_SITES:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(out_dir: Path, metrics: dict, privacy: dict, roc: dict | None) -> dict[str, Path]:
    num_rounds = int(metrics["config"]["federation"]["num_rounds"])
    out: dict[str, Path] = {"learning_curves": plot_learning_curves(metrics, out_dir / PLOTS["learning_curves"])}
    roc_path = plot_roc(roc, out_dir / PLOTS["roc"])
    if roc_path is not None:
        out["roc"] = roc_path
    out["epsilon"] = plot_epsilon(privacy, num_rounds, out_dir / PLOTS["epsilon"])
    return out


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def write_report(out_dir: Path, metrics: dict, privacy: dict, plots: dict[str, Path], meta: dict) -> Path:
    cfg = metrics["config"]
    final = metrics["final"]
    g = final.get("global", {})
    mode = recorded_mode(privacy.get("privacy_mode"))
    mode_text = mode.label if mode is not None else str(privacy.get("privacy_mode"))
    no_dp = mode is not None and not mode.private
    sample_level = mode is not None and mode.sample_level
    secagg = privacy.get("secure_aggregation", {})
    secagg_text = (
        f"On: SecAgg+ with {secagg.get('num_shares')} shares, reconstruction threshold "
        f"{secagg.get('reconstruction_threshold')} — the server only ever saw the sum of the hospitals' updates."
        if secagg.get("protocol")
        else "OFF (explicitly requested): the server could see each hospital's update."
    )
    site_rows = []
    for site, m in sorted(final.get("sites", {}).items()):
        p = privacy.get("sites", {}).get(site, {})
        eps = p.get("epsilon") or {}
        last_eps = eps[max(eps, key=int)] if eps else None
        site_rows.append(
            "<tr>"
            + "".join(
                f"<td>{_fmt(x)}</td>"
                for x in (
                    site,
                    m.get("num_test_examples"),
                    m.get("accuracy"),
                    m.get("balanced_accuracy"),
                    m.get("auc"),
                    m.get("sensitivity"),
                    m.get("specificity"),
                    last_eps,
                    p.get("budget"),
                    p.get("status"),
                )
            )
            + "</tr>"
        )
    round_rows = "".join(
        f"<tr><td>{r['round']}</td><td>{_fmt(r['global'].get('auc'))}</td><td>{_fmt(r['global'].get('accuracy'))}</td>"
        f"<td>{_fmt(r['global'].get('loss'))}</td><td>{_fmt(r.get('duration_s'))}</td>"
        f"<td>{html.escape('; '.join(r.get('events', [])))}</td></tr>"
        for r in metrics["rounds"]
    )
    data_cfg = cfg["data"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medfed run report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f0f0; }} .warn {{ color: #a00; font-weight: bold; }} img {{ max-width: 100%; }}
.big {{ font-size: 1.4em; }}
</style></head><body>
<h1>Federated training report</h1>
<p class="big">Global model after round {final.get('round')}: test AUC <b>{_fmt(g.get('auc'))}</b>,
accuracy <b>{_fmt(g.get('accuracy'))}</b>, sensitivity {_fmt(g.get('sensitivity'))},
specificity {_fmt(g.get('specificity'))}.</p>
<h2>What was run</h2>
<table>
<tr><th>Data</th><td>{html.escape(str(data_cfg.get('dataset') or data_cfg.get('data_path')))} —
{len(final.get('sites', {}))} hospitals, partition {html.escape(str(data_cfg.get('partition')))}</td></tr>
<tr><th>Model</th><td>{html.escape(str(meta.get('model')))} ({meta.get('num_parameters')} parameters)</td></tr>
<tr><th>Rounds</th><td>{cfg['federation']['num_rounds']} rounds of {cfg['training']['local_epochs']} local epochs,
strategy {html.escape(cfg['federation']['strategy'])}</td></tr>
<tr><th>Privacy</th><td class="{'warn' if no_dp else ''}">{html.escape(mode_text)}
{f"; budget epsilon {cfg['privacy']['epsilon']}, delta {cfg['privacy']['delta']} per hospital" if sample_level else ''}</td></tr>
<tr><th>Secure aggregation</th><td class="{'' if secagg.get('protocol') else 'warn'}">{html.escape(secagg_text)}</td></tr>
</table>
<h2>Per hospital (final round)</h2>
<p>Each hospital's own test patients; "n/a" means the metric is undefined there (for example AUC when a
hospital's test patients all have the same diagnosis).</p>
<table><tr><th>Hospital</th><th>Test patients</th><th>Accuracy</th><th>Balanced acc.</th><th>AUC</th>
<th>Sensitivity</th><th>Specificity</th><th>Epsilon spent</th><th>Budget</th><th>Status</th></tr>
{''.join(site_rows)}</table>
{_classes_section(metrics.get("final_classes"), meta.get("class_names") or [], g)}
<h2>Learning curves</h2>{_img(plots['learning_curves'])}
{'<h2>ROC curve of the final global model</h2>' + _img(plots['roc']) if 'roc' in plots else ''}
<h2>Privacy spent</h2>{_img(plots['epsilon'])}
<h2>Round by round</h2>
<table><tr><th>Round</th><th>Global AUC</th><th>Global accuracy</th><th>Loss</th><th>Seconds</th><th>Events</th></tr>
{round_rows}</table>
<h2>Reproducibility</h2>
<pre>{html.escape(_meta_text(meta))}</pre>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _classes_section(classes: dict | None, names: list[str], g: dict) -> str:
    """Multiclass runs: macro values, then per class sensitivity, F1 and the confusion matrix of
    the final global model on the operator's test split."""
    if not classes:
        return ""
    cm = classes["confusion_matrix"]
    names = [str(n) for n in names] if len(names) == len(cm) else [str(i) for i in range(len(cm))]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{_fmt(sens)}</td><td>{_fmt(f1)}</td>"
        + "".join(f"<td>{v}</td>" for v in row)
        + "</tr>"
        for name, sens, f1, row in zip(names, classes["sensitivity_per_class"], classes["f1_per_class"], cm)
    )
    return f"""<h2>Per class (final global model, central test split)</h2>
<p>Macro AUC (one-vs-rest) {_fmt(g.get('auc'))}, macro-F1 {_fmt(g.get('f1'))}, balanced accuracy
{_fmt(g.get('balanced_accuracy'))}. Rows: true class; the last columns count predictions per class.</p>
<table><tr><th>Class</th><th>Sensitivity</th><th>F1</th>{head}</tr>{rows}</table>"""


def _meta_text(meta: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in meta.items() if k not in ("config",))
