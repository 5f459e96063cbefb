"""What a server-side EMA (`server-ema`) would publish, replayed from a run's per-round aggregates.

With `server-ema` on, the sites train from the plain aggregate, exactly as without it, so a
run's sequence of aggregates does not depend on the decay: one run kept with
`benchmarks/accuracy.py --keep-rounds DIR` (its checkpoints hold the plain aggregate: the
model itself with `server-ema = 0`, `ema_train_weights` otherwise) gives every decay's
published model, the decay-0 baseline included. Each is scored as the run scores its final
model: operating point (temperature, Youden's J) chosen on the official validation split
(`server.operating.choose_central`), test metrics at that point. Compare decays on the
validation columns; the test columns are only reported.

Run from the repository root:
  python benchmarks/ema_replay.py DIR/pneumonia-dirichlet1-eps8-seed1 --decays 0,0.5,0.6,0.7,0.8 [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_rounds(folder: Path) -> dict[int, list[np.ndarray]]:
    """Round -> the plain aggregate of that round (what the sites trained from next)."""
    out: dict[int, list[np.ndarray]] = {}
    for path in folder.glob("round*.npz"):
        rnd = int(re.fullmatch(r"round(\d+)\.npz", path.name).group(1))
        with np.load(path) as z:
            n = sum(1 for k in z.files if k.startswith("w"))
            key = "opt__ema_train_weights__{}" if "opt__ema_train_weights__0" in z.files else "w{}"
            out[rnd] = [z[key.format(i)] for i in range(n)]
    if not out:
        sys.exit(f"error: no round*.npz in {folder}; keep a run's rounds with accuracy.py --keep-rounds")
    return dict(sorted(out.items()))


def ema(aggregates: list[list[np.ndarray]], decay: float) -> list[np.ndarray]:
    """The bias-corrected EMA that server.strategies.guarded publishes after these rounds."""
    avg = None
    for weights in aggregates:
        w = [np.asarray(x, dtype=np.float64) for x in weights]
        avg = [(1 - decay) * x for x in w] if avg is None else [decay * a + (1 - decay) * x for a, x in zip(avg, w)]
    return [(a / (1 - decay ** len(aggregates))).astype(np.float32) for a in avg]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--decays", default="0,0.5,0.6,0.7,0.8")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from common.calibration import probabilities
    from common.config import RunConfig
    from common.datasets.selection import load_run_dataset
    from common.evaluation import predict_logits
    from common.metrics import compute_metrics
    from common.models import build_model, model_options, resolve_model_name, set_weights
    from server.operating import central_validation_split, choose_central
    from server.run_setup import central_test_split

    cfg = RunConfig.from_flower(json.loads((args.folder / "run-config.json").read_text()))
    dataset = load_run_dataset(cfg.data)
    val, test = central_validation_split(dataset), central_test_split(dataset)
    if val is None or test is None or dataset.num_classes != 2:
        sys.exit("error: the replay needs a binary dataset with official validation and test splits")
    model = build_model(resolve_model_name(cfg.training.model, dataset.modality), dataset.input_shape,
                        dataset.num_classes, **model_options(dataset.modality, cfg.data.hash_buckets))
    rounds = load_rounds(args.folder)
    first, last = min(rounds), max(rounds)
    if list(rounds) != list(range(first, last + 1)):
        sys.exit(f"error: rounds {list(rounds)} are not consecutive; the replay needs every round from {first} to {last}")
    if first != 1:  # not what server-ema publishes (it averages from round 1): said in every row
        print(f"note: rounds {first}..{last} only: the replayed EMA starts at round {first}, server-ema's at round 1")

    def score(weights: list[np.ndarray]) -> dict[str, float]:
        set_weights(model, weights)
        yv, yt = val.y.numpy().reshape(-1), test.y.numpy().reshape(-1)
        lv = predict_logits(model, val.x, device="cpu").double().numpy()
        lt = predict_logits(model, test.x, device="cpu").double().numpy()
        point = choose_central(cfg, lv, yv)
        m = compute_metrics(yt, probabilities(lt, point.temperature), point.threshold)
        return {"val_auc": float(roc_auc_score(yv, lv[:, 1] - lv[:, 0])),
                "val_balanced_accuracy": (point.validation_sensitivity + point.validation_specificity) / 2,
                "auc": m["auc"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                "sensitivity": m["sensitivity"], "specificity": m["specificity"], "threshold": point.threshold}

    rows = []
    for decay in (float(d) for d in args.decays.split(",")):
        r = {"decay": decay, "first_round": first, "rounds": last, **score(ema(list(rounds.values()), decay))}
        rows.append(r)
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
    if args.out:
        doc = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "ema_replay", "replays": []}
        doc["replays"].append({"folder": args.folder.name, "seed": cfg.data.seed,
                               "command": "python benchmarks/ema_replay.py " + " ".join(argv or sys.argv[1:]),
                               "results": rows})
        args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
