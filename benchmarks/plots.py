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
    ref = [ns[0] * 1.0, ns[-1]]
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
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    del ref
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
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, out / "scaling_round_time.png")


def accuracy_plot(data: dict, out: Path) -> Path:
    summary = {e["cell"]: e for e in data["summary"]}
    eps_keys = [("eps1", 1.0), ("eps3", 3.0), ("eps5", 5.0), ("eps8", 8.0), ("nodp", 16.0)]
    series = {
        "PneumoniaMNIST IID (AUC)": ("pneumonia-iid-{}", "auc"),
        "PneumoniaMNIST Dirichlet 0.5 (AUC)": ("pneumonia-dirichlet0.5-{}", "auc"),
        "Heart FedAvg (mean site acc.)": ("heart-fedavg-{}", "mean_site_accuracy"),
        "Heart FedProx (mean site acc.)": ("heart-fedprox-{}", "mean_site_accuracy"),
        "Heart FedAdam (mean site acc.)": ("heart-fedadam-{}", "mean_site_accuracy"),
        "ECG5000 GRU (acc.)": ("ecg-gru-{}", "accuracy"),
        "ECG5000 LSTM (acc.)": ("ecg-lstm-{}", "accuracy"),
    }
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, (pattern, metric) in series.items():
        xs, ys, es = [], [], []
        for key, x in eps_keys:
            e = summary.get(pattern.format(key))
            if e and metric in e:
                xs.append(x)
                ys.append(e[metric]["mean"])
                es.append(e[metric]["std"])
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    for y, text in ((0.944, "MedMNIST ResNet-18 AUC 0.944"), (0.735, "FLamby pooled 0.735"),
                    (0.94, "ECG5000 FCN 0.94 (full UCR)")):
        ax.axhline(y, color="grey", lw=0.6, ls=":")
        ax.text(1.02, y, text, fontsize=7, va="bottom", color="grey")
    ax.set_xscale("log")
    ax.set_xticks([1, 3, 5, 8, 16])
    ax.set_xticklabels(["1", "3", "5", "8", "no DP"])
    ax.set(xlabel="epsilon per hospital (delta 1e-4)", ylabel="metric (mean +- std over seeds)",
           title="Accuracy vs privacy budget (medfed defaults, 10 rounds)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
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
    for name, draw in (("secagg_overhead", secagg_plot), ("scaling", scaling_plot), ("accuracy", accuracy_plot),
                       ("dp_overhead", dp_plot)):
        data = _load(args.results, name)
        if data is not None and (name != "secagg_overhead" or "grid" in data):
            draw(data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
