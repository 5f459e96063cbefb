"""The end of a synthesis run: the synthetic table and its data card.

Generation is post-processing of the final global generator (itself a function of DP outputs
only) with fresh noise and the public schema: it reads no row and costs no privacy. The table is
the hospital `table` format medfed reads (CSV + Parquet, feature columns in schema order, a
`label` column of class indices), so `medfed data check` and `medfed simulate --data` take it.
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
from server.run_setup import RunSetup

SYNTHETIC_CSV = "synthetic.csv"
SYNTHETIC_PARQUET = "synthetic.parquet"
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
    card = {
        "kind": "synthetic data",
        "files": [SYNTHETIC_CSV, SYNTHETIC_PARQUET],
        "format": "table",
        "label_column": schema.label,
        "class_names": list(schema.classes or setup.dataset.class_names),
        "rows": int(len(df)),
        "columns": [
            {"name": c.name, "kind": c.kind, **({"min": c.lo, "max": c.hi} if c.kind == "continuous" else
                                              {"values": list(c.values)})}
            for c in schema.columns
        ],
        # The sites whose rows trained the generator: in a deployment not every site of the dataset
        # connects, and a site may refuse (its status says why).
        "source": {"dataset": setup.dataset.name or cfg.data.data_path, "sites": contributing,
                   "sites_in_dataset": setup.dataset.site_names()},
        "privacy": {"mode": cfg.privacy.mode, "per_site": sites,
                    "guarantee": "each site's rows are protected by (epsilon, delta)-DP of the discriminator's "
                                 "DP-SGD; the generator and these rows are post-processing (docs/PRIVACY.md)"},
        "secure_aggregation": meta.get("secure_aggregation"),
        "model": {"name": setup.model_name, "rounds": meta.get("round"), "num_parameters": meta.get("num_parameters")},
        "seed": cfg.data.seed,
        "code_version": code_version(),
        "library_versions": meta.get("library_versions"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / DATA_CARD, card)
    return {"synthetic_csv": out / SYNTHETIC_CSV, "synthetic_parquet": out / SYNTHETIC_PARQUET, "datacard": out / DATA_CARD}
