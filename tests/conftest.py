import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
os.environ.setdefault("MEDFED_DATA_DIR", str(DEFAULT_DATA))
@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ["MEDFED_DATA_DIR"])
    if not d.is_dir():
        pytest.skip(f"shared datasets not found at {d}; set MEDFED_DATA_DIR to the folder holding DATASETS.md")
    return d
