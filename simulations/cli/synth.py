"""`medfed synth`: a federated, differentially private synthetic table or image set (the options;
the run is simulations/synthesize.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from simulations.cli.support import user_errors, warn


@user_errors
def synth(
    dataset: Annotated[Optional[str], typer.Option(help="Built-in dataset: heart-disease (table, public schema) or pneumoniamnist (28x28 images).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="A hospital table (CSV/Parquet; needs --schema) or 28x28 grey images (.npz, MedMNIST layout) instead of a built-in dataset.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="Format of --data: table or npz.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="The --data table's label column (default: label); the synthetic table keeps its name.")] = None,
    schema: Annotated[Optional[Path], typer.Option(help="The table's public schema (JSON: each column's kind and declared domain).")] = None,
    sites: Annotated[Optional[int], typer.Option(help="Number of simulated hospitals (natural partitions fix it).")] = None,
    partition: Annotated[Optional[str], typer.Option(help="natural, iid, dirichlet or quantity.")] = None,
    epsilon: Annotated[Optional[float], typer.Option(help="Per-hospital privacy budget epsilon (DP-SGD on the discriminator).")] = None,
    delta: Annotated[Optional[float], typer.Option(help="Per-hospital delta.")] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Federated rounds.")] = None,
    local_epochs: Annotated[Optional[int], typer.Option(help="Local epochs per round.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Local batch size.")] = None,
    rows: Annotated[Optional[int], typer.Option(help="Synthetic rows (or images) to write (split evenly over the classes).")] = None,
    no_dp: Annotated[bool, typer.Option("--no-dp", help="Train WITHOUT differential privacy (reported as such).")] = False,
    no_secagg: Annotated[bool, typer.Option("--no-secagg", help="Turn secure aggregation OFF (reported as such).")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed (simulation: repeats the run exactly).")] = None,
    site_policy: Annotated[Optional[str], typer.Option(help="The virtual hospitals' privacy policies as JSON (as medfed simulate).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: a new folder under runs/).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the built-in datasets (or MEDFED_DATA_DIR).")] = None,
    verbose: Annotated[bool, typer.Option(help="Show Flower's own log.")] = False,
) -> None:
    """Train a conditional GAN across simulated hospitals (DP-SGD discriminator, SecAgg+) and write a
    synthetic table (synthetic.csv/.parquet) or image set (synthetic.npz), its data card and a quality report.

    Default: heart-disease, its 4 hospitals, epsilon 5 per hospital. Images (pneumoniamnist, or
    --format npz) have their own defaults: 4 sites, epsilon 8, the benchmarked recipe.
    """
    from simulations.simulate import build_config, default_partition, new_out_dir
    from simulations.synthesize import IMAGE_RECIPE, TABLE_RECIPE, synthesize

    ds = "" if data is not None else (dataset or "heart-disease")
    images = ds == "pneumoniamnist" or format == "npz" or (data is not None and data.suffix == ".npz")
    recipe = IMAGE_RECIPE if images else TABLE_RECIPE
    cfg = build_config(
        {
            "task": "synthesize",
            "dataset": ds,
            "data-path": str(data) if data is not None else None,
            "data-format": format,
            "label-column": label_column,
            "synth-schema": str(schema) if schema is not None else None,
            "synth-rows": rows if rows is not None else recipe.get("synth-rows"),
            "synth-learning-rate": recipe["synth-learning-rate"],
            "num-sites": sites if sites is not None else recipe.get("num-sites"),
            "partition": partition or default_partition(ds, str(data or "")),
            "seed": seed,
            "site-policy": site_policy,
            "local-epochs": local_epochs if local_epochs is not None else recipe["local-epochs"],
            "batch-size": batch_size if batch_size is not None else recipe["batch-size"],
            "privacy-mode": "none" if no_dp else None,
            "epsilon": epsilon if epsilon is not None else recipe["epsilon"],
            "delta": delta,
            "secagg": False if no_secagg else None,
            "num-rounds": rounds if rounds is not None else recipe["num-rounds"],
            "out-dir": str(out or new_out_dir()),
        }
    )
    if no_dp:
        warn("differential privacy is OFF for this synthetic data (--no-dp): it may reproduce patients.")
    if not cfg.secagg.enabled:
        warn("secure aggregation is OFF for this run (--no-secagg); the server sees each hospital's update.")
    result = synthesize(cfg, data_dir=str(data_dir) if data_dir else None, verbose=verbose)
    q = result.quality
    if images:
        typer.echo(f"synthetic images: {result.out_dir / 'synthetic.npz'} ({result.card['rows']} images; data card datacard.json)")
        typer.echo(f"TSTR AUC {q.tstr_auc:.3f} on the {q.evaluated_on} (TRTR {q.trtr_auc:.3f}); "
                   f"report: {result.out_dir / 'quality_report.html'}")
    else:
        typer.echo(f"synthetic table: {result.out_dir / 'synthetic.csv'} ({result.card['rows']} rows; data card datacard.json)")
        typer.echo(f"TSTR mean hospital accuracy {q.tstr_mean:.3f} (TRTR {q.trtr_mean:.3f}); "
                   f"report: {result.out_dir / 'quality_report.html'}")
    for site, p in result.card["privacy"]["per_site"].items():
        typer.echo(f"  {site}: epsilon {p['epsilon']} (delta {p['delta']})")
