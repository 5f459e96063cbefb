"""What the server and every site derive identically for a synthesis run: encoder and model.

Both ends call `synthesis_model` with the same run config and the dataset's public metadata
(modality, input shape, classes), so they build the same architecture; nothing here reads a row.
Tables get the public-schema encoder and the tabular GAN; 28x28 grey images the fixed [-1, 1]
map and the conditional DCGAN.
"""

from __future__ import annotations

import numpy as np
import torch

from common.config import RunConfig
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.errors import ConfigError
from common.synthesis.encoding import TableEncoder
from common.synthesis.gan import ConditionalGAN, TabularGAN
from common.synthesis.image_gan import ImageEncoder, ImageGAN
from common.synthesis.schema import TableSchema, schema_for

SYNTH_MODEL_NAME = "tabular-cgan"
IMAGE_SYNTH_MODEL_NAME = "image-dcgan"
SYNTH_MODALITIES = ("tabular", "image")

Encoder = TableEncoder | ImageEncoder


def is_synthesis(cfg: RunConfig) -> bool:
    return cfg.synthesis.task == "synthesize"


def _supported(dataset: FederatedDataset) -> None:
    if dataset.modality not in SYNTH_MODALITIES:
        raise ConfigError(
            f"task=synthesize supports tables and 28x28 grey images; {dataset.name} is {dataset.modality} data.",
            "synthesise a table (--dataset heart-disease, or --data FILE.csv --format table with --schema) or "
            "images (--dataset pneumoniamnist, or --data FILE.npz --format npz).",
        )


def run_schema(cfg: RunConfig, dataset: FederatedDataset) -> TableSchema:
    """The run's public table schema, checked against the dataset's shape (not its values)."""
    _supported(dataset)
    if dataset.modality != "tabular":
        raise ConfigError(f"{dataset.name} holds images: a table schema does not apply to it.",
                          "synthesise images without --schema / synth-schema.")
    schema = schema_for(cfg.data.dataset if not cfg.data.data_path else "", cfg.synthesis.schema, cfg.data.label_column)
    return schema.validate(num_features=int(np.prod(dataset.input_shape)), num_classes=dataset.num_classes)


def run_encoder(cfg: RunConfig, dataset: FederatedDataset) -> Encoder:
    """The run's public encoder: the schema's for a table, the fixed image map for images."""
    _supported(dataset)
    if dataset.modality == "tabular":
        return TableEncoder(run_schema(cfg, dataset))
    if cfg.synthesis.schema:
        raise ConfigError(f"synth-schema={cfg.synthesis.schema!r} is set, but {dataset.name} holds images.",
                          "drop --schema / synth-schema: images need no schema (their encoding is fixed).")
    encoder = ImageEncoder()
    if tuple(dataset.input_shape) != encoder.shape:
        raise ConfigError(
            f"The image generator makes 28x28 grey images {encoder.shape}; {dataset.name} has images of shape "
            f"{tuple(dataset.input_shape)} (channels, height, width).",
            "resize the images to 28x28 and convert them to one grey channel before synthesising "
            "(as MedMNIST's 28-pixel files are).",
        )
    return encoder


def synthesis_model_name(dataset: FederatedDataset) -> str:
    return IMAGE_SYNTH_MODEL_NAME if dataset.modality == "image" else SYNTH_MODEL_NAME


def synthesis_model(cfg: RunConfig, dataset: FederatedDataset) -> tuple[Encoder, ConditionalGAN]:
    """The encoder and a freshly initialised GAN (seeded by the run's seed, as the classifier is)."""
    encoder = run_encoder(cfg, dataset)
    torch.manual_seed(cfg.data.seed)
    if isinstance(encoder, ImageEncoder):
        return encoder, ImageGAN(dataset.num_classes)
    return encoder, TabularGAN(encoder, dataset.num_classes)


def encode_site(site: SiteData, encoder: Encoder) -> SiteData:
    """A site's raw (un-normalised) rows or images in the GAN's encoding, after the domain check."""
    def enc(split: Split, part: str) -> Split:
        x = split.x.numpy()
        if isinstance(encoder, TableEncoder):
            x = x.reshape(len(split), -1)
        encoder.check(x, f"site {site.name!r} ({part} split)")
        return Split(encoder.encode(x), split.y)

    return SiteData(site.name, enc(site.train, "train"), enc(site.test, "test"))
