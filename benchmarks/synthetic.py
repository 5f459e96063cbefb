"""Synthetic heart-disease patients at epsilon 5 per hospital, side by side (>= 3 seeds), and
synthetic PneumoniaMNIST X-rays at epsilon 8 (`medfed-synth-pneumonia`):

* `medfed-synth`: `medfed synth`'s federation (4 natural hospitals, SecAgg+, DP-SGD discriminator,
  20 rounds x 5 local epochs), TSTR = logistic regression trained on its 1000 synthetic rows;
* `privbayes-pooled`: DataSynthesizer's PrivBayes, a centralised epsilon-DP library synthesizer,
  on the four hospitals' pooled training rows at the same epsilon;
* `pooled-synth`: the same GAN and
  DP-SGD trained on the four hospitals' pooled training rows as one dataset, at the same epsilon
  (what pooling would give; it needs the data in one place);
* `real-dp-fedavg`: medfed's real-data DP FedAvg classifier (heart-disease, epsilon 5).

Every score is the mean of the 4 per-hospital test accuracies (FLamby's metric) on the
hospitals' real test splits. The centralised library synthesizer is DataSynthesizer's PrivBayes
(`privbayes-pooled`, `pip install -e ".[bench]"`): smartnoise-synth 1.0.8 pins opacus<0.15 and
synthcity torch<2.3, so neither installs beside medfed. `pooled-synth` is medfed's own GAN on the
pooled rows.

`medfed-synth-pneumonia`: `medfed synth --dataset pneumoniamnist` with its defaults
(simulations/synthesize.py IMAGE_RECIPE: 4 sites, Dirichlet partition, epsilon 8, SecAgg+), 2000
synthetic images; the score is the TSTR AUC (a small CNN trained on the synthetic images) on the
**official test split**. The recipe was chosen on the official validation split only.

    RAY_ADDRESS=local nice -n 10 python benchmarks/synthetic.py --seeds 0,1,2
    RAY_ADDRESS=local nice -n 10 python benchmarks/synthetic.py --seeds 0,1,2 --only medfed-synth-pneumonia --name synthetic-pneumonia
    python benchmarks/synthetic.py --seeds 0,1,2,3,4 --only privbayes-pooled --name synthetic-privbayes
    (RAY_ADDRESS=local: start a private Ray instance even if another one runs on the machine)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import data_dir, machine, write_result  # noqa: E402

EPSILON = 5.0
SYNTH = {"task": "synthesize", "dataset": "heart-disease", "partition": "natural", "epsilon": EPSILON,
         "num-rounds": 20, "local-epochs": 5, "batch-size": 64, "synth-learning-rate": 0.005, "synth-rows": 1000}
FEDAVG = {"dataset": "heart-disease", "partition": "natural", "strategy": "fedavg", "privacy-mode": "sample-dp",
          "epsilon": EPSILON}


def _table_scores(q) -> dict:
    """TSTR (mean over hospitals and per hospital), mean TSTR AUC and mean marginal distance of a
    table's quality report: what every table variant reports."""
    return {"tstr": q.tstr_mean, "tstr_site": q.tstr,
            "tstr_auc": statistics.fmean(v for v in q.tstr_auc.values() if v is not None),
            "marginal_mean": statistics.fmean(q.marginals.values())}


def medfed_synth(seed: int, work: Path) -> dict:
    from simulations.simulate import build_config
    from simulations.synthesize import synthesize

    started = time.monotonic()
    result = synthesize(build_config(SYNTH | {"seed": seed, "out-dir": str(work / f"synth-{seed}")}))
    q = result.quality
    eps = [p["epsilon"] for p in result.card["privacy"]["per_site"].values()]
    return {**_table_scores(q), "trtr": q.trtr_mean, "corr_mean_diff": q.correlation_mean_diff,
            "dcr_synthetic_median": q.dcr_synthetic_median, "dcr_test_median": q.dcr_test_median,
            "epsilon_max": max(eps), "seconds": round(time.monotonic() - started, 1)}


def medfed_synth_pneumonia(seed: int, work: Path) -> dict:
    from simulations.simulate import build_config
    from simulations.synthesize import IMAGE_RECIPE, synthesize

    started = time.monotonic()
    result = synthesize(build_config({"task": "synthesize", "dataset": "pneumoniamnist", **IMAGE_RECIPE,
                                      "seed": seed, "out-dir": str(work / f"pneumonia-{seed}")}))
    q = result.quality
    eps = [p["epsilon"] for p in result.card["privacy"]["per_site"].values()]
    return {"tstr": q.tstr_auc, "metric": "TSTR AUC, official test split", "trtr": q.trtr_auc,
            "tstr_accuracy": q.tstr_accuracy, "trtr_accuracy": q.trtr_accuracy,
            "real_classifier_auc_on_synthetic": q.real_classifier_auc_on_synthetic,
            "dcr_synthetic_median": q.dcr_synthetic_median, "dcr_test_median": q.dcr_test_median,
            "epsilon_max": max(eps), "recipe": IMAGE_RECIPE, "seconds": round(time.monotonic() - started, 1)}


def pooled_synth(seed: int, work: Path) -> dict:
    """The same GAN and DP-SGD on one pooled dataset (no federation), in this process."""
    import torch

    from client.privacy.trainers import make_trainer
    from common.datasets.contract import SiteData, Split
    from common.datasets.selection import load_run_dataset
    from common.synthesis.quality import assess
    from common.synthesis.setup import encode_site, synthesis_model
    from server.synthesis_outputs import generate_rows
    from simulations.simulate import build_config
    from simulations.synthesize import raw_splits

    started = time.monotonic()
    cfg = build_config(SYNTH | {"seed": seed})
    ds = load_run_dataset(cfg.data)
    enc, gan = synthesis_model(cfg, ds)
    pooled = Split(torch.cat([s.train.x for s in ds.sites.values()]), torch.cat([s.train.y for s in ds.sites.values()]))
    site = encode_site(SiteData("pooled", pooled, pooled), enc)
    trainer = make_trainer(cfg, num_examples=len(site.train), ledger_path=work / f"pooled-{seed}.json", run_name="pooled")
    torch.manual_seed(seed)
    for _ in range(cfg.federation.num_rounds):
        result = trainer.train_round(gan, site.train, device=torch.device("cpu"))
    x, y = generate_rows(gan, enc, cfg.synthesis.rows, ds.num_classes, seed)
    train, test = raw_splits(ds)
    q = assess(enc.schema, (x, y), train, test, seed=seed)
    return {**_table_scores(q), "epsilon_max": result.epsilon, "seconds": round(time.monotonic() - started, 1)}


def privbayes_pooled(seed: int, work: Path) -> dict:
    """DataSynthesizer's PrivBayes (correlated attribute mode, Bayesian network of degree 2), a
    centralised epsilon-DP synthesizer from a library (pip install DataSynthesizer==0.1.13; not a
    medfed dependency), on the four hospitals' pooled training rows at the same epsilon.

    Its attribute domains come from the public schema (`numerical_attribute_ranges`,
    `categorical_attribute_domain_file`), not from the rows: DataSynthesizer otherwise reads
    them off the data without noise. Scored like the others (logistic regression TSTR on each
    hospital's real test split)."""
    import json

    import numpy as np
    import pandas as pd
    from DataSynthesizer.DataDescriber import DataDescriber
    from DataSynthesizer.DataGenerator import DataGenerator

    from common.datasets.selection import load_run_dataset
    from common.synthesis.quality import assess
    from common.synthesis.setup import synthesis_model
    from simulations.simulate import build_config
    from simulations.synthesize import raw_splits

    started = time.monotonic()
    cfg = build_config(SYNTH | {"seed": seed})
    ds = load_run_dataset(cfg.data)
    enc, _ = synthesis_model(cfg, ds)
    schema = enc.schema
    train, test = raw_splits(ds)
    x = np.concatenate([v[0] for v in train.values()])
    y = np.concatenate([v[1] for v in train.values()])
    names = [c.name for c in schema.columns]
    frame = pd.DataFrame(x, columns=names)
    frame["label"] = y
    source = work / f"privbayes-{seed}.csv"
    frame.to_csv(source, index=False)
    categorical = {c.name: c.kind != "continuous" for c in schema.columns} | {"label": True}
    domains = {c.name: list(c.values) for c in schema.columns if c.kind != "continuous"}
    domains["label"] = list(range(ds.num_classes))
    domain_file = work / f"privbayes-domains-{seed}.json"
    domain_file.write_text(json.dumps(domains))
    ranges = {c.name: [c.lo, c.hi] for c in schema.columns if c.kind == "continuous"}
    describer = DataDescriber(category_threshold=20)
    describer.describe_dataset_in_correlated_attribute_mode(
        str(source), k=2, epsilon=EPSILON, attribute_to_is_categorical=categorical,
        categorical_attribute_domain_file=str(domain_file), numerical_attribute_ranges=ranges, seed=seed)
    description = work / f"privbayes-description-{seed}.json"
    describer.save_dataset_description_to_file(str(description))
    out = work / f"privbayes-synthetic-{seed}.csv"
    generator = DataGenerator()
    generator.generate_dataset_in_correlated_attribute_mode(SYNTH["synth-rows"], str(description), seed=seed)
    generator.save_synthetic_data(str(out))
    synthetic = pd.read_csv(out)
    xs = synthetic[names].to_numpy(dtype=np.float64)
    ys = synthetic["label"].to_numpy().astype(np.int64)
    q = assess(schema, (xs, ys), train, test, seed=seed)
    return {**_table_scores(q), "epsilon_max": EPSILON,
            "library": "DataSynthesizer 0.1.13 (PrivBayes, k=2)", "seconds": round(time.monotonic() - started, 1)}


def real_dp_fedavg(seed: int, work: Path) -> dict:
    from simulations.simulate import build_config, run

    started = time.monotonic()
    result = run(build_config(FEDAVG | {"seed": seed, "out-dir": str(work / f"fedavg-{seed}")}))
    sites = {s: m.get("accuracy") for s, m in result.metrics["final"]["sites"].items()}
    eps = [max(e["epsilon"].values()) for e in result.privacy["sites"].values()]
    return {"tstr": statistics.fmean(v for v in sites.values() if v is not None), "site_accuracy": sites,
            "epsilon_max": max(eps), "seconds": round(time.monotonic() - started, 1)}


VARIANTS = {"medfed-synth": medfed_synth, "pooled-synth": pooled_synth, "privbayes-pooled": privbayes_pooled,
            "real-dp-fedavg": real_dp_fedavg,
            "medfed-synth-pneumonia": medfed_synth_pneumonia}
HEART = "medfed-synth,pooled-synth,real-dp-fedavg"  # the default --only (the image run is separate: longer)


def _with_ray_retries(variant, seed: int, work: Path, attempts: int = 3) -> dict:
    """On a loaded shared machine Ray's 30 s node start-up can time out before any training:
    retry that (and only that) so one slow start does not lose the other seeds."""
    from common.errors import ConfigError

    for attempt in range(attempts):
        try:
            return variant(seed, work)
        except ConfigError as err:
            if "Could not start the local Ray engine" not in str(err) or attempt == attempts - 1:
                raise
            print(f"Ray did not start (attempt {attempt + 1}): retrying", flush=True)
            time.sleep(10)
    raise AssertionError("unreachable")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default=HEART)
    ap.add_argument("--name", default="synthetic", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()
    data_dir()
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: more threads only oversubscribe it
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="medfed-synth-bench-") as tmp:
        for name in args.only.split(","):
            for seed in seeds:
                r = _with_ray_retries(VARIANTS[name], seed, Path(tmp))
                metric = r.get("metric", "mean hospital accuracy")
                print(f"{name} seed {seed}: {metric} {r['tstr']:.3f} ({r['seconds']} s)", flush=True)
                runs.setdefault(name, []).append({"seed": seed, **r})
                write_result(args.name, {"machine": machine(), "partial": True, "runs": runs,
                                         "command": " ".join(sys.argv)})  # kept if a later seed fails
    summary = {
        name: {"mean": statistics.fmean(r["tstr"] for r in rs),
               "std": statistics.stdev([r["tstr"] for r in rs]) if len(rs) > 1 else 0.0, "n": len(rs)}
        for name, rs in runs.items()
    }
    for name, s in summary.items():
        print(f"{name:16s} {s['mean']:.3f} +- {s['std']:.3f} (n={s['n']})")
    path = write_result(args.name, {"machine": machine(), "summary": summary, "runs": runs,
                                       "command": " ".join(sys.argv)})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
