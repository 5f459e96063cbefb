"""Accuracy against published tables, each cell a real `medfed simulate` run over >= 3 seeds.

Cells (all other settings are medfed's defaults: 10 rounds, 2 local epochs, batch 128, SGD lr (DP)
0.5 (no DP: 0.05 for the CNN, 0.5 pinned for the MLP and GRU/LSTM) momentum 0.9, SecAgg+ on, sample-level DP with ghost clipping, delta 1e-4, RDP):
  * pneumonia-{iid,dirichlet0.5}-{eps1,eps3,eps8,nodp} and pneumonia-dirichlet1-eps8 (the default
    simulation): PneumoniaMNIST, 4 hospitals, CNN; metric: AUC and accuracy of the final global
    model on the official test split (624 images), at the run's own operating point (chosen on the
    official validation split, 524 images never trained on: docs/EVALUATION.md);
    reference MedMNIST v2 ResNet-18 (centralised, no privacy) AUC 0.944, ACC 0.854.
  * heart-{fedavg,fedprox,fedadam}-{eps1,eps5,nodp}: Fed-Heart-Disease, the 4 natural hospitals,
    MLP; metric: mean of the 4 per-hospital test accuracies (FLamby's metric); reference FLamby
    pooled 0.735, FedAvg 0.685, FedAdam 0.726, FedAvg + Opacus at epsilon >= 5 about 0.70.
  * ecg-{gru,lstm}-{eps8,nodp}: ECG5000 (our 60/20/20 split of the 500 UCR training beats),
    4 hospitals IID; metric: accuracy of the final global model on the held-out test beats;
    reference (full UCR split, centralised, no privacy) FCN 0.94, ResNet 0.93.
  * text-{eps8,eps3,nodp}: Medical Abstracts (our 70/10/20 split of the 2,888 abstracts), the 3
    natural-looking hospitals, model=auto (text-linear); metric: accuracy, macro-F1 and macro
    one-vs-rest AUC of the final global model on the held-out test abstracts; reference measured
    in this script on the same split and seed: TF-IDF (1-2 grams) + logistic regression (C=10),
    centralised and non-private (`text_reference`).
`--set key=value` (repeatable) changes a setting in every chosen cell, to compare training
recipes on the same cells; such runs carry their overrides and belong in their own `--out` file.
"seed" is medfed's `seed` (partition, ECG5000 split, model initialisation); Opacus' noise is
not seeded. Each finished run is appended to the results file at once, so an interrupted
benchmark resumes where it stopped (`--fresh` starts over).

Run from the repository root:  python benchmarks/accuracy.py [--only 'heart-*,pneumonia-iid-eps8'] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

# Heart-disease (MLP) and ECG5000 (GRU/LSTM) no-DP cells were measured at the DP-tuned default
# learning rate, which trains those small models well; the CNN diverges at it without clipping,
# so PneumoniaMNIST no-DP cells use medfed's non-private default (0.05).
DP_DEFAULT_LR = 0.5
EPSILONS = {"eps1": 1.0, "eps3": 3.0, "eps5": 5.0, "eps8": 8.0, "nodp": None}
REFERENCES = {
    "pneumonia": "MedMNIST v2 ResNet-18 (28x28, centralised, no DP): AUC 0.944, ACC 0.854",
    "heart": "FLamby Fed-Heart-Disease (mean per-hospital accuracy): pooled 0.735, FedAvg 0.685, FedAdam 0.726; "
             "FedAvg + Opacus at epsilon >= 5 about 0.70",
    "ecg": "UCR ECG5000 full split, centralised, no DP (Fawaz et al. 2019): FCN 0.94, ResNet 0.93",
    "text": "TF-IDF 1-2 grams + logistic regression (C=10), centralised, no DP, same split and seed "
            "(measured by this script, see tfidf_* in each text run)",
}
TARGETS = {  # cell pattern -> (metric, threshold, text); binary metrics are at the run's operating point
    "pneumonia-dirichlet1-eps8": [("auc", 0.96, "AUC >= 0.96"), ("accuracy", 0.88, "accuracy at op. point >= 0.88"),
                                  ("balanced_accuracy", 0.86, "balanced accuracy at op. point >= 0.86")],
    "pneumonia-iid-eps3": [("auc", 0.944, "AUC >= 0.944")],
    "pneumonia-dirichlet0.5-eps8": [("auc", 0.90, "AUC >= 0.90"),
                                    ("balanced_accuracy", 0.80, "balanced accuracy at op. point >= 0.80")],
    "heart-*-eps5": [("mean_site_accuracy", 0.75, "mean per-hospital accuracy >= 0.75")],
    "ecg-*-eps8": [("accuracy", 0.90, "accuracy >= 0.90")],
    "text-eps8": [("accuracy", 0.55, "accuracy >= 0.55"), ("auc", 0.80, "macro AUC >= 0.80")],
}
METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "val_auc", "val_balanced_accuracy",
           "mean_site_accuracy", "macro_f1",
           "seconds_per_round", "tfidf_accuracy", "tfidf_macro_f1", "tfidf_auc")
# Default order when no --only is given: cheap and most informative first.
PRIORITY = ["pneumonia-dirichlet1-eps8", "heart-*", "pneumonia-iid-eps8", "pneumonia-dirichlet0.5-eps8", "pneumonia-iid-eps3",
            "pneumonia-dirichlet0.5-eps3", "ecg-gru-eps8", "ecg-gru-nodp", "ecg-lstm-eps8", "ecg-lstm-nodp",
            "pneumonia-*-nodp", "pneumonia-*-eps1", "text-eps8", "text-nodp", "text-eps3"]


@dataclass(frozen=True)
class Cell:
    name: str
    family: str
    changes: dict[str, Any] = field(hash=False)


def all_cells() -> list[Cell]:
    cells = []
    for part, extra in (("iid", {"partition": "iid"}),
                        ("dirichlet0.5", {"partition": "dirichlet", "alpha": 0.5})):
        for key in ("eps1", "eps3", "eps8", "nodp"):
            cells.append(Cell(f"pneumonia-{part}-{key}", "pneumonia",
                              {"dataset": "pneumoniamnist", "num-sites": 4, **extra, **_privacy(key)}))
    cells.append(Cell("pneumonia-dirichlet1-eps8", "pneumonia",  # `medfed simulate` with no options
                      {"dataset": "pneumoniamnist", "num-sites": 4, "partition": "dirichlet", "alpha": 1.0,
                       **_privacy("eps8")}))
    for strategy in ("fedavg", "fedprox", "fedadam"):
        for key in ("eps1", "eps5", "nodp"):
            cells.append(Cell(f"heart-{strategy}-{key}", "heart",
                              {"dataset": "heart-disease", "partition": "natural",
                               "strategy": strategy, **_privacy(key, non_private_lr=DP_DEFAULT_LR)}))
    for model in ("gru", "lstm"):
        for key in ("eps8", "nodp"):
            cells.append(Cell(f"ecg-{model}-{key}", "ecg",
                              {"dataset": "ecg5000", "num-sites": 4, "partition": "iid",
                               "model": model, **_privacy(key, non_private_lr=DP_DEFAULT_LR)}))
    for key in ("eps8", "eps3", "nodp"):
        cells.append(Cell(f"text-{key}", "text",
                          {"dataset": "medical-abstracts", "partition": "natural",
                           **_privacy(key, non_private_lr=DP_DEFAULT_LR)}))
    return cells


def text_reference(seed: int, data_dir: str) -> dict[str, float]:
    """TF-IDF (1-2 grams) + logistic regression on the abstracts' training rows of `seed`'s split
    (what the federation's three hospitals hold together), scored on its test rows (the
    federation's central test split): the centralised, non-private reference."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from common.datasets.builtin.medical_abstracts import read_corpus, split_indices
    from common.metrics import compute_metrics

    texts, y = read_corpus(data_dir)
    parts = split_indices(y, seed)
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    train = vectoriser.fit_transform([texts[i] for i in parts["train"]])
    model = LogisticRegression(C=10, max_iter=2000).fit(train, y[parts["train"]])
    probs = model.predict_proba(vectoriser.transform([texts[i] for i in parts["test"]]))
    m = compute_metrics(y[parts["test"]], np.asarray(probs))
    return {"tfidf_accuracy": m["accuracy"], "tfidf_macro_f1": m["f1"], "tfidf_auc": m["auc"]}


def _privacy(key: str, *, non_private_lr: float | None = None) -> dict[str, Any]:
    """Privacy settings of a cell. Non-private cells take medfed's non-private learning rate
    (NON_PRIVATE_LEARNING_RATE, the automatic rate without DP) unless `non_private_lr` pins another."""
    eps = EPSILONS[key]
    if eps is not None:
        return {"privacy-mode": "sample-dp", "epsilon": eps}
    return {"privacy-mode": "none", **({"learning-rate": non_private_lr} if non_private_lr else {})}


def select(cells: list[Cell], only: str) -> list[Cell]:
    """Cells matching the comma-separated glob patterns in `only`, in that order; with no
    patterns, every cell in PRIORITY order."""
    patterns = [p.strip() for p in only.split(",") if p.strip()] or PRIORITY
    chosen: list[Cell] = []
    for pat in patterns:
        matched = [c for c in cells if fnmatch.fnmatch(c.name, pat) and c not in chosen]
        if not matched and not any(fnmatch.fnmatch(c.name, pat) for c in cells):
            sys.exit(f"error: --only pattern {pat!r} matches no cell; cells are: {', '.join(c.name for c in cells)}")
        chosen.extend(matched)
    return chosen


def run_cell(cell: Cell, seed: int, workdir: Path, data_dir: str, quick: bool,
             overrides: dict[str, str] | None = None, keep_rounds: Path | None = None) -> dict:
    from simulations.simulate import build_config, run

    changes = dict(cell.changes) | dict(overrides or {})
    if quick:
        changes.update({"num-rounds": 1, "local-epochs": 1})
    cfg = build_config(changes | {"seed": seed, "out-dir": str(workdir / f"{cell.name}-seed{seed}")})
    started = time.monotonic()
    result = run(cfg, data_dir=data_dir, listeners=[_round_keeper(cfg, keep_rounds / f"{cell.name}-seed{seed}")]
                 if keep_rounds else ())
    wall = time.monotonic() - started
    final = result.metrics["final"]
    point = final.get("operating_point") or {}
    site_acc = {s: m.get("accuracy") for s, m in final["sites"].items()}
    values = [v for v in site_acc.values() if v is not None]
    eps = [e["epsilon"].get(str(cfg.federation.num_rounds)) for e in result.privacy["sites"].values()]
    return {
        "cell": cell.name,
        "seed": seed,
        "auc": final["global"].get("auc"),
        "accuracy": final["global"].get("accuracy"),
        # at the operating point chosen on validation data (docs/EVALUATION.md)
        "balanced_accuracy": final["global"].get("balanced_accuracy"),
        "sensitivity": final["global"].get("sensitivity"),
        "specificity": final["global"].get("specificity"),
        "threshold": point.get("threshold"),
        "temperature": point.get("temperature"),
        # recipes are compared on these (the official validation split), never on test
        "val_auc": validation_auc(cfg, result.out_dir, data_dir),
        "val_balanced_accuracy": _mean_or_none(point.get("validation_sensitivity"), point.get("validation_specificity")),
        "intervals": (final.get("global_details") or {}).get("intervals"),
        "overrides": dict(overrides or {}),
        "mean_site_accuracy": statistics.fmean(values) if values else None,
        "site_accuracy": site_acc,
        "best_round_auc": max((r["global"].get("auc") or 0.0) for r in result.metrics["rounds"]),
        "epsilon_spent_max": max((e for e in eps if e is not None), default=None),
        "rounds": cfg.federation.num_rounds,
        "seconds": round(result.seconds, 1),
        "learning_rate": cfg.training.learning_rate,
        "quick": quick,
        "macro_f1": final["global"].get("f1"),
        "wall_seconds": round(wall, 1),
        "seconds_per_round": round(result.seconds / cfg.federation.num_rounds, 1),
    } | (text_reference(seed, data_dir) if cell.family == "text" else {})


def _round_keeper(cfg, dest: Path):
    """A listener that copies the run's checkpoint (weights and server-optimiser state) after
    every round to dest/round<r>.npz, with the run config: what benchmarks/ema_replay.py reads.
    The recorder writes the checkpoint before it announces the round's end, so each copy is whole."""
    import shutil

    def keep(kind: str, payload: dict) -> None:
        if kind == "round_end" and payload["round"] > 0:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(cfg.out_dir) / "checkpoint.npz", dest / f"round{payload['round']}.npz")
            (dest / "run-config.json").write_text(json.dumps(cfg.to_flower(), indent=1))
    return keep


def validation_auc(cfg, out_dir: Path, data_dir: str) -> float | None:
    """AUC of the run's final global model on the operator's validation split (the official one,
    standardised as the server standardises it); None for datasets without one or non-binary ones.
    The split the run chose its operating point on, so recipes can be compared without test."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from common.datasets.selection import load_run_dataset
    from common.evaluation import predict_logits
    from common.models import build_model, model_options, resolve_model_name
    from server.operating import central_validation_split

    dataset = load_run_dataset(cfg.data, data_dir)
    val = central_validation_split(dataset)
    if val is None or dataset.num_classes != 2:
        return None
    model = build_model(resolve_model_name(cfg.training.model, dataset.modality), dataset.input_shape,
                        dataset.num_classes, **model_options(dataset.modality, cfg.data.hash_buckets))
    model.load_state_dict(torch.load(Path(out_dir) / "global_model.pt", map_location="cpu", weights_only=True))
    logits = predict_logits(model, val.x, device="cpu").double()
    return float(roc_auc_score(np.asarray(val.y).reshape(-1), torch.softmax(logits, dim=1)[:, 1].numpy()))


def _mean_or_none(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else statistics.fmean(values)


def _recipe(run: dict) -> str:
    """The run's --set overrides as text ("" for medfed's defaults)."""
    return " ".join(f"{k}={v}" for k, v in sorted(run.get("overrides", {}).items()))


def summarise(runs: list[dict], cells: list[Cell]) -> list[dict]:
    """Mean and std per cell and recipe (runs with different --set overrides never mix)."""
    out = []
    for cell in cells:
        ours = [r for r in runs if r["cell"] == cell.name and not r.get("quick")]
        for recipe in sorted({_recipe(r) for r in ours}):
            out.append(_summarise_cell(cell, recipe, [r for r in ours if _recipe(r) == recipe]))
    return out


def _summarise_cell(cell: Cell, recipe: str, mine: list[dict]) -> dict:
    entry: dict[str, Any] = {"cell": cell.name, "family": cell.family, "recipe": recipe,
                             "seeds": sorted(r["seed"] for r in mine)}
    for metric in METRICS:
        vals = [r[metric] for r in mine if r.get(metric) is not None]
        if vals:
            entry[metric] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    checks = []
    for pat, targets in TARGETS.items():
        if fnmatch.fnmatch(cell.name, pat):
            for metric, threshold, text in targets:
                if metric in entry:
                    m = entry[metric]["mean"]
                    checks.append({"target": text, "mean": m, "met": m >= threshold, "by": m - threshold})
    entry["targets"] = checks
    return entry


def print_summary(summary: list[dict]) -> None:
    rows = []
    for e in summary:
        def ms(metric: str) -> str:
            return f"{e[metric]['mean']:.3f} +- {e[metric]['std']:.3f}" if metric in e else "-"
        verdict = "; ".join(f"{c['target']}: {'met' if c['met'] else 'MISSED'} ({c['by']:+.3f})" for c in e["targets"])
        name = e["cell"] + (f" [{e['recipe']}]" if e.get("recipe") else "")
        rows.append([name, len(e["seeds"]), ms("auc"), ms("accuracy"), ms("balanced_accuracy"),
                     ms("mean_site_accuracy"), verdict or "-"])
    print(_bench.table(rows, ["cell", "seeds", "AUC", "accuracy (op.)", "bal. acc. (op.)",
                              "mean site accuracy", "target"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated glob patterns of cells (default: all, priority order)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true", help="smoke mode: one heart-disease cell, 1 seed, 1 round")
    ap.add_argument("--fresh", action="store_true", help="ignore runs already recorded in the results file")
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="add the runs recorded in another results file (e.g. from a parallel --out run) and exit")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep-rounds", type=Path, default=None, metavar="DIR",
                    help="keep every round's checkpoint under DIR/<cell>-seed<seed>/ (for benchmarks/ema_replay.py)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a run setting (kebab-case key) in every chosen cell; use with --out")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"error: --set {item!r} is not KEY=VALUE (e.g. --set augmentation=affine)")
        overrides[key.strip()] = value.strip()
    cells = all_cells()
    if args.list:
        print("\n".join(c.name for c in cells))
        return 0
    if args.quick:
        args.only, args.seeds = args.only or "heart-fedavg-eps5", "0"
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = select(cells, args.only)
    path = args.out or _bench.RESULTS / ("accuracy-quick.json" if args.quick else "accuracy.json")
    previous = json.loads(path.read_text()) if path.exists() and not args.fresh else {}
    runs: list[dict] = list(previous.get("runs", []))
    machine = previous.get("machine") or _bench.machine()
    data_dir = _bench.data_dir()
    started = time.monotonic()
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    commands = list(previous.get("commands", [previous["command"]] if "command" in previous else []))
    commands.append(command)
    for other in args.merge:  # the merged files' own commands, so every run's origin stays on record
        theirs = json.loads(other.read_text())
        commands.extend(theirs.get("commands") or ([theirs["command"]] if "command" in theirs else []))

    def save() -> None:
        summary = summarise(runs, cells)
        done = {e["cell"] for e in summary}
        payload = {
            "benchmark": "accuracy",
            "command": command,
            "commands": commands,
            "references": REFERENCES,
            "defaults": "10 rounds, 2 local epochs, batch 128, lr 0.5, momentum 0.9, SecAgg+ on, ghost clipping, "
                        "delta 1e-4, RDP accountant, max grad norm 1.0",
            "machine": machine,
            "load_average_at_last_save": _bench.loadavg(),
            "cells_run": sorted(done),
            "cells_not_run": [c.name for c in cells if c.name not in done],
            "summary": summary,
            "runs": runs,
        }
        _bench.write_result("accuracy", payload, out=path)

    for other in args.merge:
        for r in json.loads(other.read_text()).get("runs", []):
            if not any(q["cell"] == r["cell"] and q["seed"] == r["seed"] and q.get("quick") == r.get("quick")
                       and _recipe(q) == _recipe(r)
                       for q in runs):
                runs.append(r)
    if args.merge:
        chosen = []

    with tempfile.TemporaryDirectory(prefix="medfed-accuracy-bench-") as tmp:
        for cell in chosen:
            for seed in seeds:
                if any(r["cell"] == cell.name and r["seed"] == seed and r.get("quick") == args.quick
                       and r.get("overrides", {}) == overrides for r in runs):
                    continue
                print(f"accuracy: {cell.name} seed {seed}", flush=True)
                r = run_cell(cell, seed, Path(tmp), data_dir, args.quick, overrides, args.keep_rounds)
                runs.append(r)
                print(f"  AUC {r['auc']}, at the operating point accuracy {r['accuracy']}, balanced accuracy "
                      f"{r['balanced_accuracy']} (threshold {r['threshold']}; validation AUC {r['val_auc']}), mean site accuracy {r['mean_site_accuracy']}, "
                      f"{r['seconds']} s", flush=True)
                save()
    save()
    summary = summarise(runs, cells)
    print()
    print_summary(summary)
    if args.quick:
        r = runs[-1]
        print(f"RATIO accuracy quick: {r['cell']} seed {r['seed']} mean site accuracy {r['mean_site_accuracy']:.3f} "
              f"(1 round; smoke only)")
    else:
        for e in summary:
            for c in e["targets"]:
                print(f"RATIO accuracy {e['cell']}{' [' + e['recipe'] + ']' if e.get('recipe') else ''}: {c['target']} -> {'met' if c['met'] else 'MISSED'} "
                      f"(mean {c['mean']:.3f}, {c['by']:+.3f})")
    print(f"\nwrote {path} ({round(time.monotonic() - started)} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
