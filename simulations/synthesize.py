"""`medfed synth`: federated DP synthetic data (a table or 28x28 grey images) from simulated
hospitals, with its quality report.

The federation is `medfed simulate`'s (same ServerApp, ClientApp, SecAgg+, site policies and
ledgers) with `task = "synthesize"`; the server writes synthetic.csv/.parquet (tables) or
synthetic.npz (images) and datacard.json. Here, where the researcher plays every hospital, the
data is then measured against each site's real data (quality.json, quality_report.html). Bad
input is refused before Ray starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import RunConfig
from common.datasets.contract import FederatedDataset
from common.datasets.selection import load_run_dataset
from common.errors import ConfigError, DataError
from common.synthesis.encoding import TableEncoder
from common.synthesis.image_quality import ImageQualityReport, assess_images
from common.synthesis.quality import QualityReport, assess
from common.synthesis.setup import Encoder, is_synthesis, run_encoder


# `medfed synth`'s defaults (kebab-case run-config keys), per kind of data; benchmarks/synthetic.py
# measures exactly these (docs/BENCHMARKS.md 4d).
TABLE_RECIPE = {"epsilon": 5.0, "num-rounds": 20, "local-epochs": 5, "batch-size": 64, "synth-learning-rate": 0.005}
IMAGE_RECIPE = {"num-sites": 4, "epsilon": 8.0, "num-rounds": 4, "local-epochs": 2, "batch-size": 64,
                "synth-learning-rate": 0.002, "synth-rows": 2000}


@dataclass
class SynthResult:
    out_dir: Path
    quality: QualityReport | ImageQualityReport
    card: dict
    seconds: float


def raw_splits(dataset: FederatedDataset) -> tuple[dict, dict]:
    def arr(split):
        return split.x.numpy().reshape(len(split), -1).astype(np.float64), split.y.numpy()

    return ({n: arr(s.train) for n, s in dataset.sites.items()}, {n: arr(s.test) for n, s in dataset.sites.items()})


def image_splits(dataset: FederatedDataset) -> tuple[dict, dict]:
    """Per site (images in [0, 1] (n, 1, H, W), labels) of the train and the test splits."""
    def arr(split):
        return split.x.numpy(), split.y.numpy()

    return ({n: arr(s.train) for n, s in dataset.sites.items()}, {n: arr(s.test) for n, s in dataset.sites.items()})


def preflight(cfg: RunConfig, dataset: FederatedDataset) -> Encoder:
    """Refuse, with the fix, what would fail (or be meaningless) inside the federation; the
    run's encoder (a table's schema encoder, or the image map)."""
    from client.privacy.private_trainer import MIN_PRIVATE_EXAMPLES, calibrate_noise
    from common.privacy import privacy_mode
    from common.privacy.mode import DP_SGD

    encoder = run_encoder(cfg, dataset)
    train, _ = raw_splits(dataset) if isinstance(encoder, TableEncoder) else image_splits(dataset)
    if isinstance(encoder, TableEncoder):
        pooled = np.concatenate([x for x, _ in train.values()])
        for j, col in enumerate(encoder.schema.columns):
            if len(np.unique(pooled[:, j])) < 2:
                raise DataError(
                    f"Column {col.name!r} has a single value ({pooled[0, j]:g}) in every site's training rows: "
                    "a generator can only invent its distribution.",
                    "drop the column from the table and the schema (it carries no information), or add sites where it varies.",
                )
    for name, (x, _) in train.items():
        encoder.check(x, f"site {name!r} (train split)")
    if privacy_mode(cfg.privacy.mode).local_training != DP_SGD:
        return encoder
    t, rounds = cfg.training, cfg.federation.num_rounds
    for name, (x, _) in train.items():
        n = len(x)
        if n < MIN_PRIVATE_EXAMPLES:
            raise DataError(
                f"Site {name!r} has {n} training rows; DP-SGD needs at least {MIN_PRIVATE_EXAMPLES}.",
                "leave the site out (another partition or --sites), or merge it with a larger site.",
            )
        batch = min(t.batch_size, n)
        steps_per_epoch = math.ceil(n / batch)
        steps = rounds * t.local_epochs * steps_per_epoch
        try:
            sigma = calibrate_noise(cfg.privacy.epsilon, cfg.privacy.delta, 1.0 / steps_per_epoch, steps, cfg.privacy.accountant)
        except ValueError:
            sigma = math.inf
        if sigma > n / steps_per_epoch:  # noise per coordinate above the clipping norm at every step
            raise ConfigError(
                f"epsilon={cfg.privacy.epsilon} is too small for {rounds} rounds x {t.local_epochs} local epochs at "
                f"site {name!r} ({n} rows): the noise multiplier would be {sigma:.3g}, so every step's noise "
                "exceeds the whole batch's clipped signal.",
                "raise --epsilon, or plan fewer --rounds / --local-epochs.",
            )
    return encoder


def synthesize(cfg: RunConfig, *, data_dir: str | None = None, display=None, verbose: bool = False) -> SynthResult:
    import os
    import time

    import pandas as pd

    from simulations.simulate import run
    from simulations.synth_report import write_quality_report

    if not is_synthesis(cfg):
        raise ConfigError("medfed synth needs task = synthesize.", "build the configuration with task=synthesize.")
    if data_dir:
        os.environ["MEDFED_DATA_DIR"] = str(Path(data_dir).resolve())
    dataset = load_run_dataset(cfg.data)
    encoder = preflight(cfg, dataset)
    started = time.monotonic()
    result = run(cfg, display=display, verbose=verbose)
    out = result.out_dir
    card = json.loads((out / "datacard.json").read_text())
    if not isinstance(encoder, TableEncoder):
        return SynthResult(out, _image_quality(cfg, dataset, out, card), card, time.monotonic() - started)
    schema = encoder.schema
    df = pd.read_csv(out / "synthetic.csv")
    xs, ys = df[list(schema.names)].to_numpy(dtype=np.float64), df[schema.label].to_numpy()
    train, test = raw_splits(dataset)
    quality = assess(schema, (xs, ys), train, test, seed=cfg.data.seed)
    (out / "quality.json").write_text(json.dumps({**quality.to_dict(), "privacy": card["privacy"]}, indent=2))
    pooled = np.concatenate([x for x, _ in train.values()])
    write_quality_report(out, schema, quality, card, pooled, xs)
    return SynthResult(out, quality, card, time.monotonic() - started)


def _image_quality(cfg: RunConfig, dataset: FederatedDataset, out: Path, card: dict) -> ImageQualityReport:
    """Measure synthetic.npz (its train images) against the real images: TSTR on the official
    test split (`central_test`) when the dataset has one; quality.json and the report."""
    from simulations.synth_report import write_image_quality_report

    with np.load(out / "synthetic.npz") as npz:
        xs = npz["train_images"].astype(np.float32)[:, None] / 255.0
        ys = npz["train_labels"].reshape(-1).astype(np.int64)
    train, test = image_splits(dataset)
    central = (dataset.central_test.x.numpy(), dataset.central_test.y.numpy()) if dataset.central_test is not None else None
    quality = assess_images((xs, ys), train, test, dataset.num_classes, central_test=central, seed=cfg.data.seed)
    (out / "quality.json").write_text(json.dumps({**quality.to_dict(), "privacy": card["privacy"]}, indent=2))
    real = np.concatenate([x for x, _ in train.values()])
    real_y = np.concatenate([y for _, y in train.values()])
    write_image_quality_report(out, quality, card, (real, real_y), (xs, ys), list(dataset.class_names))
    return quality
