"""The built-in datasets, one module each, registered by name (the ``dataset`` setting).

Every dataset module exposes the same names (FLamby's contract): ``FILES`` (files, checksums,
official URLs), ``INFO`` (modality, shape, classes, default partition, natural sites), ``load``
and ``DATASET``, the `BuiltinDataset` bundling them. Adding a dataset is one new module here
plus one registration line below; configuration validation, `load_federated`, `medfed data
check` and `medfed simulate` then know it. Importing this package is cheap (no torch, pandas or
numpy), because configuration validation reads it in every process.
"""

from __future__ import annotations

from common.datasets.builtin import ecg5000, heart_disease, medical_abstracts, pneumoniamnist
from common.datasets.builtin.base import BuiltinDataset
from common.registry import Registry

BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("built-in dataset", setting="dataset")
BUILTIN_DATASETS.register(heart_disease.DATASET.name, heart_disease.DATASET)
BUILTIN_DATASETS.register(pneumoniamnist.DATASET.name, pneumoniamnist.DATASET)
BUILTIN_DATASETS.register(ecg5000.DATASET.name, ecg5000.DATASET)
BUILTIN_DATASETS.register(medical_abstracts.DATASET.name, medical_abstracts.DATASET)
