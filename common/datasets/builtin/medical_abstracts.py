"""Medical Abstracts (Schopf, Braun, Matthes, NLPIR 2022): 2,888 abstracts in five condition classes.

Only the corpus' official test file is at hand, so it is the whole dataset here: a stratified
train/validation/test split (70/10/20) fixed by the run's seed. Tokenised with the hashing
tokeniser (common/datasets/tokenise.py): no vocabulary comes from the corpus.

Natural sites: the corpus has no hospitals, so three natural-looking ones are drawn from the
training (and test) rows, per class, with fixed shares: a general hospital that sees a bit of
everything, a cancer centre (mostly neoplasms) and a heart-and-brain centre (mostly
cardiovascular and nervous-system conditions). Sizes and class mixes then differ as between
real hospitals (about 780/480/760 training abstracts at seed 0). Each site's test rows are its
share of the dataset's test split, which is also the operator's ``central_test``, so
``iid``/``dirichlet`` partitions of the pooled training rows lose nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.datasets.builtin.base import BuiltinDataset, DatasetInfo, assemble
from common.datasets.download import DatasetFile, DatasetFiles, ensure_files
from common.datasets.tokenise import DEFAULT_MAX_TOKENS
from common.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from common.datasets.contract import FederatedDataset, Split
    from common.datasets.tokenise import Tokeniser

_REPO = "https://raw.githubusercontent.com/sebischair/Medical-Abstracts-TC-Corpus/70a2d91/"

FILES = DatasetFiles(
    folder="medical-abstracts",
    source="https://github.com/sebischair/Medical-Abstracts-TC-Corpus",
    files=(
        DatasetFile(
            "medical_tc_test.csv",
            _REPO + "medical_tc_test.csv",
            sha256=("1eecea73c9ecad292c55e10403bd139fab9580545d6878482997c5564d51ac05",),
        ),
        DatasetFile(
            "medical_tc_labels.csv",
            _REPO + "medical_tc_labels.csv",
            sha256=("8a27ae03339c798103678efa8012f744a723ff71a80f2b2c1355ee249564adc5",),
        ),
    ),
)

CLASS_NAMES = (
    "neoplasms",
    "digestive system diseases",
    "nervous system diseases",
    "cardiovascular diseases",
    "general pathological conditions",
)
SITES = ("general-hospital", "cancer-centre", "heart-and-brain-centre")
# Share of each class's rows that goes to each site (rows: CLASS_NAMES, columns: SITES).
SITE_SHARES = (
    (0.30, 0.60, 0.10),
    (0.70, 0.20, 0.10),
    (0.30, 0.10, 0.60),
    (0.25, 0.10, 0.65),
    (0.45, 0.25, 0.30),
)

INFO = DatasetInfo(
    modality="text",
    default_partition="natural",
    input_shape=(DEFAULT_MAX_TOKENS,),
    num_classes=len(CLASS_NAMES),
    class_names=CLASS_NAMES,
    natural_sites=SITES,
)

FRACTIONS = (0.7, 0.1, 0.2)  # train / validation / test, stratified


def splits(data_dir: str | Path | None = None, seed: int = 0, tokeniser: Tokeniser | None = None) -> dict[str, Split]:
    """Stratified ``train``/``val``/``test`` (70/10/20) of the 2,888 abstracts, fixed by ``seed``."""
    x, y = _read(ensure_files(FILES, data_dir), tokeniser)
    return _split(x, y, seed)


def split_indices(y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The row indices (into medical_tc_test.csv) of each split: what `splits` uses, for
    references that need the raw text (the TF-IDF baseline in benchmarks/text.py)."""
    from common.datasets.partition import stratified_split

    return dict(zip(("train", "val", "test"), stratified_split(y, FRACTIONS, seed)))


def load(data_dir: str | Path | None = None, seed: int = 0, tokeniser: Tokeniser | None = None) -> FederatedDataset:
    """The three natural-looking hospitals (see the module docstring); central_test = test,
    central_val = val (the operator's validation split: temperature, never trained on)."""
    import numpy as np

    from common.datasets.contract import SiteData, Split

    folder = ensure_files(FILES, data_dir)
    x, y = _read(folder, tokeniser)
    parts = _split(x, y, seed)
    rng = np.random.default_rng([seed, 0x7E47])
    shares = np.asarray(SITE_SHARES)
    sites: dict[str, SiteData] = {}
    assigned = {name: _assign(parts[name].y.numpy(), shares, rng) for name in ("train", "test")}
    for i, site in enumerate(SITES):
        chosen = {name: np.flatnonzero(assigned[name] == i) for name in ("train", "test")}
        sites[site] = SiteData(
            site,
            Split(parts["train"].x[chosen["train"]], parts["train"].y[chosen["train"]]),
            Split(parts["test"].x[chosen["test"]], parts["test"].y[chosen["test"]]),
        )
    ds = assemble(DATASET, folder, sites, parts["test"], central_val=parts["val"])
    ds.input_shape = (int(x.shape[1]),)
    return ds


def _assign(y: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A site index per row: each row of class c goes to site s with probability shares[c, s]."""
    import numpy as np

    u = rng.random(len(y))
    return (u[:, None] > np.cumsum(shares[y], axis=1)).sum(axis=1).clip(max=shares.shape[1] - 1)


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Split]:
    from common.datasets.contract import Split

    return {name: Split.of(x[idx], y[idx]) for name, idx in split_indices(y, seed).items()}


def read_corpus(data_dir: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """The abstracts' raw text and class indices 0..4, checked (for text baselines)."""
    from common.datasets.loaders.text import read_text_table

    import pandas as pd

    path = ensure_files(FILES, data_dir) / "medical_tc_test.csv"
    raw = read_text_table(path, text_column="medical_abstract", label_column="condition_label", max_tokens=1)
    texts = pd.read_csv(path, dtype=str, keep_default_na=False)["medical_abstract"].tolist()
    return texts, _labels(raw.labels, path)


def _read(folder: Path, tokeniser: Tokeniser | None) -> tuple[np.ndarray, np.ndarray]:
    from common.datasets.loaders.text import read_text_table
    from common.datasets.tokenise import Tokeniser

    tok = tokeniser or Tokeniser()
    path = folder / "medical_tc_test.csv"
    raw = read_text_table(
        path,
        text_column="medical_abstract",
        label_column="condition_label",
        max_tokens=tok.max_tokens,
        hash_buckets=tok.buckets,
    )
    return raw.x, _labels(raw.labels, path)


def _labels(labels: np.ndarray, path: Path) -> np.ndarray:
    import numpy as np

    y = np.asarray(labels, dtype=np.int64) - 1
    if y.min() < 0 or y.max() >= len(CLASS_NAMES):
        raise DataError(
            f"{path} has condition labels outside 1..5.", "replace it with the official file (DATASETS.md)."
        )
    return y


DATASET = BuiltinDataset(name="medical-abstracts", files=FILES, info=INFO, load=load)
