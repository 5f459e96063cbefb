"""The end of a synthesis run: the synthetic table (or images) and its data card.

Generation is post-processing of the final global generator (itself a function of DP outputs
only) with fresh noise and the public encoding: it reads no row and costs no privacy. A table is
the hospital `table` format medfed reads (CSV + Parquet, feature columns in schema order, a
`label` column of class indices); images are a MedMNIST-layout `synthetic.npz` (uint8
(n, 28, 28) images, (n, 1) labels), so `medfed data check` and `medfed simulate --data` take both.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_write_json
from common.synthesis.setup import run_schema
from common.synthesis.encoding import TableEncoder
from common.synthesis.image_gan import ImageEncoder
from server.run_setup import RunSetup

SYNTHETIC_CSV = "synthetic.csv"
SYNTHETIC_PARQUET = "synthetic.parquet"
SYNTHETIC_NPZ = "synthetic.npz"
# The npz layout requires a test split (a hospital keeps train and test); it is synthetic too,
# drawn after the training images: evaluate a model trained on them on real data.
NPZ_TEST_FRACTION = 0.2
DATA_CARD = "datacard.json"


def code_version() -> str:
    """The git commit of this code, when it runs from a checkout ("unknown" otherwise)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def generate_rows(model: torch.nn.Module, encoder: TableEncoder, rows: int, num_classes: int, seed: int):
    """(raw feature values, labels): `rows` rows split as evenly as possible over the classes
    (the sites' class frequencies are data; they are not released)."""
    labels = torch.arange(rows) % num_classes
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    enc = model.sample(labels, generator=gen).numpy()  # type: ignore[operator]
    model.train()
    return encoder.decode(enc, np.random.default_rng(seed)), labels.numpy()


def contributing_sites(setup: RunSetup) -> list[str]:
    """Sites that trained in at least one recorded round (a non-zero example count)."""
    trained = {name for record in setup.recorder.rounds.values()
               for name, m in record.get("sites", {}).items() if int(m.get("num_train_examples") or 0) > 0}
    return [name for name in setup.dataset.site_names() if name in trained]


def write_synthetic_table(setup: RunSetup, privacy: dict, meta: dict) -> dict[str, Path]:
    import pandas as pd

    cfg = setup.cfg
    schema = run_schema(cfg, setup.dataset)
    encoder = TableEncoder(schema)
    x, y = generate_rows(setup.model, encoder, cfg.synthesis.rows, setup.dataset.num_classes, cfg.data.seed)
    def whole(c) -> bool:  # integer columns and integer-coded categories are written as integers
        return c.integer or (c.kind == "categorical" and all(float(v).is_integer() for v in c.values))

    df = pd.DataFrame({c.name: x[:, j].astype(np.int64) if whole(c) else x[:, j] for j, c in enumerate(schema.columns)})
    df[schema.label] = y.astype(np.int64)
    out = setup.out_dir
    df.to_csv(out / SYNTHETIC_CSV, index=False)
    df.to_parquet(out / SYNTHETIC_PARQUET, index=False)
    card = _data_card(setup, privacy, meta, files=[SYNTHETIC_CSV, SYNTHETIC_PARQUET], fmt="table", rows=int(len(df)),
                      details={"label_column": schema.label,
                               "class_names": list(schema.classes or setup.dataset.class_names),
                               "columns": [
                                   {"name": c.name, "kind": c.kind, **({"min": c.lo, "max": c.hi} if c.kind == "continuous"
                                                                      else {"values": list(c.values)})}
                                   for c in schema.columns]})
    atomic_write_json(out / DATA_CARD, card)
    return {"synthetic_csv": out / SYNTHETIC_CSV, "synthetic_parquet": out / SYNTHETIC_PARQUET, "datacard": out / DATA_CARD}


def generate_images(model: torch.nn.Module, n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, 28, 28), labels (n,)), classes in turn (the sites' frequencies are not released)."""
    labels = torch.arange(n) % num_classes
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    enc = model.sample(labels, generator=gen).numpy()  # type: ignore[operator]
    model.train()
    return ImageEncoder().decode(enc), labels.numpy()


def write_synthetic_images(setup: RunSetup, privacy: dict, meta: dict) -> dict[str, Path]:
    cfg = setup.cfg
    k = setup.dataset.num_classes
    total = cfg.synthesis.rows
    n_test = min(total - 1, max(k, k * round(total * NPZ_TEST_FRACTION / k)))
    images, labels = generate_images(setup.model, total, k, cfg.data.seed)
    out = setup.out_dir
    path = out / SYNTHETIC_NPZ
    labels = labels.astype(np.uint8 if k <= 256 else np.int64)[:, None]
    np.savez_compressed(path, train_images=images[: total - n_test], train_labels=labels[: total - n_test],
                        test_images=images[total - n_test :], test_labels=labels[total - n_test :])
    card = _data_card(setup, privacy, meta, files=[SYNTHETIC_NPZ], fmt="npz", rows=total,
                      details={"class_names": list(setup.dataset.class_names),
                               "images": {"shape": list(ImageEncoder.shape[1:]), "channels": 1, "dtype": "uint8",
                                          "train": total - n_test, "test": n_test,
                                          "note": "test_images are synthetic too (the npz layout needs a test split); "
                                                  "evaluate models trained on this file on real images"}})
    atomic_write_json(out / DATA_CARD, card)
    return {"synthetic_npz": path, "datacard": out / DATA_CARD}


def write_synthetic(setup: RunSetup, privacy: dict, meta: dict) -> dict[str, Path]:
    """The synthetic data of the run's modality and its data card."""
    if setup.dataset.modality == "image":
        return write_synthetic_images(setup, privacy, meta)
    return write_synthetic_table(setup, privacy, meta)


def _data_card(setup: RunSetup, privacy: dict, meta: dict, *, files: list[str], fmt: str, rows: int,
               details: dict) -> dict:
    """Source sites, epsilon/delta spent per site, rows, model, code version and seed."""
    cfg = setup.cfg
    contributing = contributing_sites(setup)
    sites = {
        name: {
            "epsilon": max(entry.get("epsilon", {}).values(), default=None),
            "delta": entry.get("delta"),
            "budget": entry.get("budget"),
            "status": entry.get("status"),
        }
        for name, entry in privacy.get("sites", {}).items()
        if name in contributing or entry.get("status") != "ok"  # trained, or refused (not: never connected)
    }
    return {
        "kind": "synthetic data",
        "files": files,
        "format": fmt,
        **details,
        "rows": rows,
        # The sites whose data trained the generator: in a deployment not every site of the dataset
        # connects, and a site may refuse (its status says why).
        "source": {"dataset": setup.dataset.name or cfg.data.data_path, "sites": contributing,
                   "sites_in_dataset": setup.dataset.site_names()},
        "privacy": {"mode": cfg.privacy.mode, "per_site": sites,
                    "guarantee": "each site's rows are protected by (epsilon, delta)-DP of the discriminator's "
                                 "DP-SGD; the generator and this data are post-processing (docs/PRIVACY.md)"},
        "secure_aggregation": meta.get("secure_aggregation"),
        "model": {"name": setup.model_name, "rounds": meta.get("round"), "num_parameters": meta.get("num_parameters")},
        "seed": cfg.data.seed,
        "code_version": code_version(),
        "library_versions": meta.get("library_versions"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
