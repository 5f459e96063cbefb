"""What the server and every site derive identically for a synthesis run: schema, encoder, model.

Both ends call `synthesis_model` with the same run config and the dataset's public metadata
(input shape, classes), so they build the same architecture; nothing here reads a row.
"""

from __future__ import annotations

import numpy as np
import torch

from common.config import RunConfig
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.errors import ConfigError
from common.synthesis.encoding import TableEncoder
from common.synthesis.gan import TabularGAN
from common.synthesis.schema import TableSchema, schema_for

SYNTH_MODEL_NAME = "tabular-cgan"


def is_synthesis(cfg: RunConfig) -> bool:
    return cfg.synthesis.task == "synthesize"


def run_schema(cfg: RunConfig, dataset: FederatedDataset) -> TableSchema:
    """The run's public schema, checked against the dataset's shape (not its values)."""
    if dataset.modality != "tabular":
        raise ConfigError(
            f"task=synthesize supports tables; {dataset.name} is {dataset.modality} data "
            "(the image generator, a conditional DCGAN, is not built yet).",
            "synthesise a table (--dataset heart-disease, or --data FILE.csv --format table with --schema).",
        )
    schema = schema_for(cfg.data.dataset if not cfg.data.data_path else "", cfg.synthesis.schema, cfg.data.label_column)
    return schema.validate(num_features=int(np.prod(dataset.input_shape)), num_classes=dataset.num_classes)


def synthesis_model(cfg: RunConfig, dataset: FederatedDataset) -> tuple[TableEncoder, TabularGAN]:
    """The encoder and a freshly initialised GAN (seeded by the run's seed, as the classifier is)."""
    encoder = TableEncoder(run_schema(cfg, dataset))
    torch.manual_seed(cfg.data.seed)
    return encoder, TabularGAN(encoder, dataset.num_classes)


def encode_site(site: SiteData, encoder: TableEncoder) -> SiteData:
    """A site's raw (un-normalised) rows in the GAN's encoding, after the domain check."""
    def enc(split: Split, part: str) -> Split:
        x = split.x.numpy().reshape(len(split), -1)
        encoder.check(x, f"site {site.name!r} ({part} split)")
        return Split(encoder.encode(x), split.y)

    return SiteData(site.name, enc(site.train, "train"), enc(site.test, "test"))
