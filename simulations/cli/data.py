"""`medfed data check`: is this data fit to join a federation?

Loads a built-in dataset (partitioned as a simulation would) or a hospital's own files, runs
the same checks a client runs before training, and prints a table per site and split (or
one JSON object with ``--json`` for scripts). Exit 0 when valid; otherwise the `DataError`
exit code with a message that says what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from simulations.cli.support import user_errors
from common.config import DataConfig
from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.check import summarise
from common.datasets.contract import FederatedDataset, with_validation
from common.datasets.datadir import resolve_data_dir
from common.datasets.formats import FORMATS
from common.datasets.hospital import load_hospital
from common.errors import ConfigError, DataError, MedfedError

data_app = typer.Typer(
    help="Check datasets: a hospital's own files or a built-in dataset, before they join a federation.",
    no_args_is_help=True,
)


@data_app.command("check")
@user_errors
def check(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help=f"A built-in dataset: {', '.join(BUILTIN_DATASETS)}.")
    ] = None,
    path: Annotated[
        Path | None, typer.Option("--path", help="A hospital's data: a file or folder (see docs/DATA.md).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Format of --path, inferred from the path when unambiguous: "
            + "; ".join(f"{name}: {f.description}" for name, f in FORMATS.items())
            + ".",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object on stdout instead of tables.")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Folder of built-in datasets (default: $MEDFED_DATA_DIR, then ~/.cache/medfed/datasets)."
        ),
    ] = None,
    sites: Annotated[
        int | None, typer.Option("--sites", help="Number of virtual sites for a built-in dataset.")
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition", help="natural, iid, dirichlet or quantity (built-in datasets; default: the dataset's own)."
        ),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Skew of dirichlet/quantity partitions (smaller = more skew).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for partitions and the automatic test split.")] = 0,
    site_name: Annotated[
        str | None,
        typer.Option("--site-name", help="Name of the site for --path (default: the file or folder name)."),
    ] = None,
    image_size: Annotated[
        int, typer.Option("--image-size", help="Image side length for image-folder/dicom (28..224).")
    ] = 28,
    label_column: Annotated[str, typer.Option("--label-column", help="Label column of a table or text-table.")] = "label",
    text_column: Annotated[str, typer.Option("--text-column", help="Note column of a text-table.")] = "text",
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Text: tokens kept per document (longer ones are truncated).")
    ] = 256,
    hash_buckets: Annotated[
        int, typer.Option("--hash-buckets", help="Text: buckets of the hashing tokeniser (no vocabulary).")
    ] = 8192,
    labels_csv: Annotated[
        str, typer.Option("--labels-csv", help="Labels file inside an image-folder/dicom folder.")
    ] = "labels.csv",
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Test share when the data carries no split.")
    ] = 0.2,
    num_classes: Annotated[
        int | None,
        typer.Option("--num-classes", help="Number of classes for integer labels when some class has no example here."),
    ] = None,
) -> None:
    """Load the data, check it, and report rows, class counts, input shape and problems per site."""
    try:
        if (dataset is None) == (path is None):
            raise ConfigError(
                "Give exactly one of --dataset (a built-in dataset) or --path (a hospital's own data).",
                "e.g. `medfed data check --dataset pneumoniamnist` or `medfed data check --path site.csv`.",
            )
        if path is not None:
            ds = load_hospital(
                path,
                fmt,
                site_name=site_name,
                image_size=image_size,
                label_column=label_column,
                labels_csv=labels_csv,
                test_fraction=test_fraction,
                seed=seed,
                num_classes=num_classes,
                text_column=text_column,
                max_tokens=max_tokens,
                hash_buckets=hash_buckets,
            )
        else:
            text = {"max_tokens": max_tokens, "hash_buckets": hash_buckets}
            ds = _load_builtin(str(dataset), data_dir, sites, partition, alpha, seed, text)
        # the validation split each site keeps for the operating point (as a run carves it)
        fraction = DataConfig().validation_fraction
        ds.sites = {name: with_validation(site, fraction, seed) for name, site in ds.sites.items()}
        summary = summarise(ds)
    except MedfedError as err:
        if json_out:  # scripts still get one JSON object, then the usual message and exit code
            typer.echo(json.dumps({"valid": False, "problems": [err.message], "sites": {}, "exit_code": err.exit_code}))
        raise
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        _print_tables(ds, summary)
    if not summary["valid"]:
        raise DataError(
            f"{ds.name} failed {len(summary['problems'])} check(s): " + "; ".join(summary["problems"]),
            "fix the data as described above and run `medfed data check` again.",
        )


def _load_builtin(
    name: str,
    data_dir: Path | None,
    sites: int | None,
    partition: str | None,
    alpha: float | None,
    seed: int,
    text: dict[str, int],
) -> FederatedDataset:
    # Imported here so `medfed data check --path ...` works even where built-in support is absent.
    from common.datasets.federated import load_federated

    defaults = DataConfig()
    cfg = DataConfig(
        dataset=name,
        num_sites=defaults.num_sites if sites is None else sites,
        partition=partition or BUILTIN_DATASETS.get(name).info.default_partition,
        alpha=defaults.alpha if alpha is None else alpha,
        seed=seed,
        **text,
    )
    return load_federated(cfg, resolve_data_dir(data_dir))


def _print_tables(ds: FederatedDataset, summary: dict) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and logs: do not squeeze the table into 80 columns
        console.width = 160
    title = (
        f"{ds.name}: {ds.modality}, input shape {tuple(ds.input_shape)}, "
        f"{ds.num_classes} classes ({', '.join(ds.class_names)})"
    )
    table = Table(title=title, show_lines=False)
    for col, kw in (
        ("Site", {"no_wrap": True}),
        ("Split", {}),
        ("Rows", {"justify": "right"}),
        ("Class counts", {}),
        ("Input shape", {}),
        ("Problems", {"overflow": "fold"}),
    ):
        table.add_column(col, **kw)
    shape = "x".join(map(str, ds.input_shape))
    for name, site in summary["sites"].items():
        for split in ("train", "val", "test"):
            counts = site["class_counts"][split]
            prefix = f"site {name} {split}:"
            mine = [p.removeprefix(prefix).strip() for p in site["problems"] if p.startswith(prefix)]
            mine += ["warning: " + w.removeprefix(prefix).strip() for w in site["warnings"] if w.startswith(prefix)]
            table.add_row(
                name,
                split,
                str(site[split]),
                " ".join(f"{c}:{n}" for c, n in zip(ds.class_names, counts, strict=True)),
                shape,
                "; ".join(mine) or "-",
            )
    for key, label, split in (("central_val", "(central validation)", "val"), ("central_test", "(central test)", "test")):
        if key in summary:
            central = summary[key]
            table.add_row(
                label,
                split,
                str(central[split]),
                " ".join(f"{c}:{n}" for c, n in zip(ds.class_names, central["class_counts"], strict=True)),
                shape,
                "-",
            )
    console.print(table)
    if "text" in summary and summary["text"]["documents"]:
        text = summary["text"]
        tokens = text["tokens"]
        console.print(
            f"text: {text['documents']} documents, tokens kept per document min {tokens['min']}, "
            f"median {tokens['median']}, 90th percentile {tokens['p90']}, max {tokens['max']}; "
            f"{text['at_max_tokens']} ({100 * text['at_max_tokens_fraction']:.0f} %) reach max-tokens="
            f"{text['max_tokens']} (truncated, or exactly that long)."
        )
    if summary["valid"]:
        console.print(f"valid: {ds.name} passed every check.")
    else:
        console.print(f"INVALID: {len(summary['problems'])} problem(s):")
        for p in summary["problems"]:
            console.print(f"  - {p}")
