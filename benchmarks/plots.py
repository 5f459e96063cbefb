"""PNG plots for docs/BENCHMARKS.md, drawn from the JSON files in benchmarks/results/.

  secagg_overhead_vs_hospitals.png  SecAgg+ round / plain round, and SecAgg+'s own seconds, vs n
  scaling_round_time.png            round time and peak memory vs number of hospitals
  accuracy_vs_epsilon.png           accuracy / AUC vs epsilon (mean +- std over seeds)
  dp_overhead.png                   training-loop slowdown of DP-SGD (hooks, ghost) per model

A plot whose results file is missing is skipped (and said so). No numbers are made up here:
everything comes from the results files.

Run from the repository root:  python benchmarks/plots.py [--results DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

DOCS = _bench.REPO / "docs" / "benchmarks"


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if not path.exists():
        print(f"skip: {path} not found")
        return None
    return json.loads(path.read_text())


def secagg_plot(data: dict, out: Path) -> Path:
    grid = data["grid"]
    ns = grid["hospitals"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label in grid["sizes"]:
        cells = {c["n"]: c for c in grid["cells"] if c["size"] == label}
        ax1.plot(ns, [cells[n]["ratio_secagg_over_plain"] for n in ns], "o-", label=f"{label} parameters")
        ax2.plot(ns, [max(cells[n]["secagg_own_seconds"], 1e-3) for n in ns], "o-",
                 label=f"{label} (n^{grid['growth'][label]['slope_own_cost_vs_n']:.2f})")
    own0 = min(max(c["secagg_own_seconds"], 1e-3) for c in grid["cells"] if c["n"] == ns[0])
    ax2.plot(ns, [own0 * (n * _log(n)) / (ns[0] * _log(ns[0])) for n in ns], "k--", lw=1, label="n log n")
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax1.set(xscale="log", xlabel="hospitals", ylabel="SecAgg+ round / plain round",
            title="Round time ratio (trivial local work)")
    ax2.set(xscale="log", yscale="log", xlabel="hospitals", ylabel="seconds",
            title="SecAgg+'s own cost per round (secagg - plain)")
    for ax in (ax1, ax2):
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, out / "secagg_overhead_vs_hospitals.png")


def _log(n: float) -> float:
    import math

    return math.log(n)


def scaling_plot(data: dict, out: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for privacy, s in data["summary"].items():
        ns = sorted(int(n) for n in s["per_n"])
        per = {int(k): v for k, v in s["per_n"].items()}
        ax1.plot(ns, [per[n]["steady_round_seconds"] for n in ns], "o-",
                 label=f"privacy {privacy} (n^{s['growth_exponent']:.2f})")
        ax2.plot(ns, [per[n]["peak_rss_gib"] for n in ns], "o-", label=f"{privacy}: RSS sum")
        ax2.plot(ns, [per[n]["peak_pss_gib"] for n in ns], "s--", label=f"{privacy}: PSS sum")
    ax1.set(xscale="log", yscale="log", xlabel="hospitals", ylabel="seconds per round",
            title="Round time (MLP, SecAgg+ on)")
    ax2.set(xscale="log", xlabel="hospitals", ylabel="GiB", title="Peak memory, driver + Ray processes")
    for ax in (ax1, ax2):
        ns_all = sorted({int(n) for s in data["summary"].values() for n in s["per_n"]})
        ax.set_xticks(ns_all)
        ax.set_xticklabels([str(n) for n in ns_all])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax2.set_ylim(bottom=0)
    return _save(fig, out / "scaling_round_time.png")


EPS_AXIS = [("eps1", 1.0), ("eps3", 3.0), ("eps5", 5.0), ("eps8", 8.0), ("nodp", 16.0)]


def accuracy_plot(data: dict, out: Path) -> Path:
    summary = {e["cell"]: e for e in data["summary"] if not e.get("recipe")}  # medfed's defaults only
    panels = [
        ("PneumoniaMNIST, 4 hospitals", [
            ("IID AUC", "pneumonia-iid-{}", "auc", "-"), ("IID accuracy", "pneumonia-iid-{}", "accuracy", "--"),
            ("Dirichlet 0.5 AUC", "pneumonia-dirichlet0.5-{}", "auc", "-"),
            ("Dirichlet 0.5 accuracy", "pneumonia-dirichlet0.5-{}", "accuracy", "--")],
         [(0.944, "ResNet-18 AUC 0.944"), (0.854, "ResNet-18 ACC 0.854")]),
        ("Fed-Heart-Disease, 4 hospitals", [
            ("FedAvg", "heart-fedavg-{}", "mean_site_accuracy", "-"),
            ("FedProx", "heart-fedprox-{}", "mean_site_accuracy", "-"),
            ("FedAdam", "heart-fedadam-{}", "mean_site_accuracy", "-")],
         [(0.735, "FLamby pooled 0.735"), (0.685, "FLamby FedAvg 0.685"), (0.726, "FLamby FedAdam 0.726")]),
        ("ECG5000, 4 hospitals IID", [
            ("GRU", "ecg-gru-{}", "accuracy", "-"), ("LSTM", "ecg-lstm-{}", "accuracy", "-")],
         [(0.94, "FCN 0.94 (full UCR split)")]),
    ]
    ylabels = ["test AUC / accuracy", "mean per-hospital test accuracy", "test accuracy"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, (title, series, refs), ylabel in zip(axes, panels, ylabels):
        drawn = 0
        for label, pattern, metric, style in series:
            xs, ys, es = [], [], []
            for key, x in EPS_AXIS:
                e = summary.get(pattern.format(key))
                if e and metric in e:
                    xs.append(x)
                    ys.append(e[metric]["mean"])
                    es.append(e[metric]["std"])
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, ls=style, label=label)
                drawn += 1
        for y, text in refs:
            ax.axhline(y, color="grey", lw=0.7, ls=":")
            ax.annotate(text, (0.99, y), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=7, color="dimgrey")
        if not drawn:
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="grey")
        ax.set_xscale("log")
        ax.set_xticks([x for _, x in EPS_AXIS])
        ax.set_xticklabels(["1", "3", "5", "8", "no DP"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel="epsilon per hospital (delta 1e-4)", ylabel=ylabel, title=title)
        if drawn:
            ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs privacy budget (mean +- std over seeds; medfed defaults, 10 rounds)", fontsize=10)
    return _save(fig, out / "accuracy_vs_epsilon.png")


def dp_plot(data: dict, out: Path) -> Path:
    results = data["results"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(results))
    w = 0.35
    ax.bar([x - w / 2 for x in xs], [r["loop_slowdown_vs_non_private"]["hooks"] for r in results], w, label="Opacus hooks")
    ax.bar([x + w / 2 for x in xs], [r["loop_slowdown_vs_non_private"]["ghost"] for r in results], w, label="ghost clipping")
    ax.axhline(1.5, color="red", lw=1, ls="--", label="target 1.5x")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['model']}\n{r['dataset']}" for r in results])
    ax.set(ylabel="training-loop time / non-private", title="DP-SGD slowdown on CPU (1 thread)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out / "dp_overhead.png")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=_bench.RESULTS)
    ap.add_argument("--out", type=Path, default=DOCS)
    args = ap.parse_args(argv)
    secagg = "secagg_overhead" if (args.results / "secagg_overhead.json").exists() else "secagg_overhead-grid"
    for name, draw in ((secagg, secagg_plot), ("scaling", scaling_plot), ("accuracy", accuracy_plot),
                       ("dp_overhead", dp_plot)):
        data = _load(args.results, name)
        if data is not None and (not name.startswith("secagg") or "grid" in data):
            draw(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
