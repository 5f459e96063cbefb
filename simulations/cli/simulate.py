"""`medfed simulate`: a whole private federation of hospitals on this machine (the options;
the run itself is simulations/simulate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from common.config import PrivacyConfig
from common.privacy import PRIVACY_MODES
from common.privacy.no_dp import NO_DP
from simulations.cli.support import user_errors, warn


@user_errors
def simulate(
    dataset: Annotated[Optional[str], typer.Option(help="Built-in dataset: pneumoniamnist, heart-disease, ecg5000, medical-abstracts.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="A hospital's own data (file or folder) instead of a built-in dataset.")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="Format of --data: npz, image-folder, dicom, wfdb, ucr, table, text-table.")] = None,
    label_column: Annotated[Optional[str], typer.Option("--label-column", help="Label column of a table or text-table (default label).")] = None,
    text_column: Annotated[Optional[str], typer.Option("--text-column", help="Note column of a text-table (default text).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Text: tokens kept per document; longer ones are truncated (default 256).")] = None,
    hash_buckets: Annotated[Optional[int], typer.Option("--hash-buckets", help="Text: buckets of the hashing tokeniser, no vocabulary from the data (default 8192).")] = None,
    sites: Annotated[Optional[int], typer.Option(help="Number of simulated hospitals (natural partitions fix it).")] = None,
    partition: Annotated[Optional[str], typer.Option(help="natural, iid, dirichlet or quantity.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Dirichlet concentration (smaller = more skew).")] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Federated rounds.")] = None,
    local_epochs: Annotated[Optional[int], typer.Option(help="Local epochs per round.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="fedavg, fedprox or fedadam.")] = None,
    epsilon: Annotated[Optional[float], typer.Option(help="Per-hospital privacy budget epsilon (DP-SGD).")] = None,
    delta: Annotated[Optional[float], typer.Option(help="Per-hospital delta.")] = None,
    max_grad_norm: Annotated[Optional[float], typer.Option(help="Clipping norm.")] = None,
    privacy_mode: Annotated[Optional[str], typer.Option(help=f"{', '.join(PRIVACY_MODES)} (default {PrivacyConfig.mode}).")] = None,
    no_dp: Annotated[bool, typer.Option("--no-dp", help="Train WITHOUT differential privacy (reported as such).")] = False,
    no_secagg: Annotated[bool, typer.Option("--no-secagg", help="Turn secure aggregation OFF (reported as such).")] = False,
    model: Annotated[Optional[str], typer.Option(help="auto, cnn, gru, lstm, mlp, text-bag, text-linear, text-gru or text-lstm.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Local batch size.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Local learning rate; 0 or unset = automatic: 0.5 with differential privacy (tuned for clipped gradients), 0.05 with --no-dp.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for partitions, initial weights and (simulation only) every site's DP noise: the same seed repeats a run exactly.")] = None,
    threshold_rule: Annotated[Optional[str], typer.Option(help="How the decision threshold is chosen on validation data: youden, target-sensitivity or fixed (0.5).")] = None,
    target_sensitivity: Annotated[Optional[float], typer.Option(help="With --threshold-rule target-sensitivity: the validation sensitivity to reach (e.g. 0.9).")] = None,
    site_policy: Annotated[Optional[str], typer.Option(help='The virtual hospitals\' privacy policies as JSON with site.toml [privacy] keys, "*" for all, e.g. \'{"*": {"total-epsilon": 12}, "site-1": {"release-evaluation": false}}\'.')] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: a new folder under runs/).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the built-in datasets (or MEDFED_DATA_DIR).")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="Run the hospitals on this running Ray cluster (HOST:PORT of its head, or auto) instead of a private Ray on this machine; see docs/SCALING.md.")] = None,
    cpus_per_site: Annotated[float, typer.Option(help="Ray CPUs each virtual hospital holds while it works.")] = 1.0,
    gpus_per_site: Annotated[Optional[float], typer.Option(help="Ray GPUs each virtual hospital holds (e.g. 0.25); default: a share of this machine's GPU, none on a cluster.")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Log the run to MLflow (default store: the folder runs/mlruns; needs medfed[mlflow]).")] = False,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI: a folder or a tracking server URL (or MLFLOW_TRACKING_URI); implies --mlflow.")] = None,
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's own log on the console (always in engine.log).")] = False,
) -> None:
    """Run a private federation of simulated hospitals on this machine and write a report.

    Default: pneumoniamnist, 4 hospitals with Dirichlet label skew, DP-SGD (epsilon 8 per
    hospital) and SecAgg+.
    """
    from server.tracking import check_store, log_run_folder, tracking_target
    from simulations.live_display import LiveDisplay, print_summary
    from simulations.ray_engine import EngineSettings
    from simulations.simulate import build_config, default_partition, new_out_dir, run

    engine = EngineSettings(address=ray_address, cpus_per_site=cpus_per_site, gpus_per_site=gpus_per_site)
    if no_dp and privacy_mode not in (None, NO_DP.name):
        raise typer.BadParameter("--no-dp contradicts --privacy-mode; use one of them.")
    mode = NO_DP.name if no_dp else privacy_mode
    ds = "" if data is not None else (dataset or "pneumoniamnist")
    part = partition or default_partition(ds, str(data or ""))
    out_dir = out or new_out_dir()
    cfg = build_config(
        {
            "dataset": ds,
            "data-path": str(data) if data is not None else None,
            "data-format": format,
            "label-column": label_column,
            "text-column": text_column,
            "max-tokens": max_tokens,
            "hash-buckets": hash_buckets,
            "num-sites": sites,
            "partition": part,
            "alpha": alpha,
            "seed": seed,
            "site-policy": site_policy,
            "threshold-rule": threshold_rule,
            "target-sensitivity": target_sensitivity,
            "local-epochs": local_epochs,
            "model": model,
            "batch-size": batch_size,
            "learning-rate": learning_rate,
            "privacy-mode": mode,
            "epsilon": epsilon,
            "delta": delta,
            "max-grad-norm": max_grad_norm,
            "secagg": False if no_secagg else None,
            "num-rounds": rounds,
            "strategy": strategy,
            "out-dir": str(out_dir),
        }
    )
    if not PRIVACY_MODES.get(cfg.privacy.mode).private:
        warn("differential privacy is OFF for this run (--no-dp); the report says so.")
    if not cfg.secagg.enabled:
        warn("secure aggregation is OFF for this run (--no-secagg); the server sees each hospital's update.")
    tracking = tracking_target(mlflow, mlflow_uri)
    if tracking is not None:
        check_store(tracking)  # an unwritable store stops the run before any hospital trains
    display = LiveDisplay(cfg)
    with display:
        result = run(
            cfg, data_dir=str(data_dir) if data_dir else None, display=display, verbose=verbose, engine=engine
        )
    print_summary(result)
    if tracking is not None:
        run_id = log_run_folder(result.out_dir, tracking, run_name=cfg.run_name or result.out_dir.name)
        typer.echo(f"mlflow: run {run_id} (experiment {tracking.experiment}) in {tracking.uri}")
