import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
os.environ.setdefault("MEDFED_DATA_DIR", str(DEFAULT_DATA))
# Every Ray a test starts (directly through Flower's run_simulation too) stays on 127.0.0.1:
# Ray reads this at import (simulations/ray_engine.py).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ["MEDFED_DATA_DIR"])
    if not d.is_dir():
        pytest.skip(f"shared datasets not found at {d}; set MEDFED_DATA_DIR to the folder holding DATASETS.md")
    return d


# The test files that take longest and mostly wait (real SuperLink/SuperNode processes, heartbeats
# of killed nodes): run first, so that under `-n 2 --dist loadfile` (pyproject.toml) one worker
# starts on them at once while the other works through the rest of the suite.
LONG_WAITING_FILES = ("tests/test_multiprocess_federation.py", "tests/test_deployed_synthesis.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_WAITING_FILES.index(path) if path in LONG_WAITING_FILES else len(LONG_WAITING_FILES)

    items.sort(key=rank)  # stable: file order and each file's own test order are kept
