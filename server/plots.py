"""The run's plots: learning curves, ROC with the operating point, calibration, privacy spent.

Drawn once, when a run finishes, from the content of metrics.json and privacy.json.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.privacy import recorded_mode  # noqa: E402
from common.privacy.mode import NO_SAMPLE_DP_LABEL  # noqa: E402

PLOTS = {
    "learning_curves": "learning_curves.png",
    "roc": "roc_curve.png",
    "calibration": "calibration.png",
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
    """The final global model's ROC on the central test split, its operating point marked."""
    if not roc:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"global model (AUC {roc.get('auc', float('nan')):.3f})")
    ax.plot([0, 1], [0, 1], "k:", label="chance")
    point = roc.get("point")
    if point:
        ax.plot([point["fpr"]], [point["tpr"]], "o", color="tab:red", ms=9,
                label=f"operating point (threshold {point['threshold']:.2f})")
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


def plot_calibration(reliability: dict | None, calibration: dict | None, path: Path) -> Path | None:
    """Reliability diagram of the central test split, before and after temperature scaling."""
    if not reliability or not calibration:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    for key, style, label in (("before", "s--", "before"), ("after", "o-", f"after (T = {calibration['temperature']:.2f})")):
        bins = reliability.get(key) or {}
        pts = [(c, o) for c, o, n in zip(bins.get("confidence", []), bins.get("observed", []), bins.get("count", []))
               if n and c is not None and o is not None]
        if pts:
            ece = calibration.get(f"ece_{key}")
            ax.plot(*zip(*pts), style, label=f"{label}, ECE {ece:.3f}" if ece is not None else label)
    ax.set(title="Calibration on the test split", xlabel="predicted probability", ylabel="observed frequency",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
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
    details = metrics["final"].get("global_details") or {}
    cal_path = plot_calibration(details.get("reliability"), details.get("calibration"), out_dir / PLOTS["calibration"])
    if cal_path is not None:
        out["calibration"] = cal_path
    out["epsilon"] = plot_epsilon(privacy, num_rounds, out_dir / PLOTS["epsilon"])
    return out
