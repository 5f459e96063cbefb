"""Public sample hospital exports, fetched and verified like the built-in datasets' files.

MIT-BIH record 100 is a WFDB export as a hospital would ship one (.hea header, .dat signal,
.atr beat annotations). It is not a built-in dataset: it has no loader of its own, a site
reads it with ``data-format = wfdb`` (docs/DATA.md and the WFDB tests use it).
"""

from __future__ import annotations

from common.datasets.download import DatasetFile, DatasetFiles

_PHYSIONET = "https://physionet.org/files/mitdb/1.0.0/"

MITBIH_100 = DatasetFiles(
    folder="mitbih-100",
    source="https://physionet.org/content/mitdb/1.0.0/",
    files=(
        DatasetFile(
            "100.hea",
            _PHYSIONET + "100.hea",
            sha256=("95fbdda0454fffae1a2dab1a5ac53e924ae97691c028cdd3ee82f2446b73c066",),
        ),
        DatasetFile(
            "100.dat",
            _PHYSIONET + "100.dat",
            sha256=("b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639",),
        ),
        DatasetFile(
            "100.atr",
            _PHYSIONET + "100.atr",
            sha256=("8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471",),
        ),
    ),
)
