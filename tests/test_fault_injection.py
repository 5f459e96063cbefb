"""The fault point the multi-process tests use must be inert unless named in the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

from client.fault_injection import (
    PAUSE_ROUNDS_ENV,
    PAUSE_RUN_ENV,
    PAUSE_SECONDS_ENV,
    marker_path,
    pause_after_training,
)


def test_inert_without_the_environment_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(PAUSE_ROUNDS_ENV, raising=False)
    start = time.monotonic()
    for rnd in (None, 1, 2, 3):
        pause_after_training(tmp_path, rnd)
    assert time.monotonic() - start < 0.5
    assert list(tmp_path.iterdir()) == []


def test_pauses_only_at_the_named_rounds_and_leaves_a_marker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PAUSE_ROUNDS_ENV, "2, 4")
    monkeypatch.setenv(PAUSE_SECONDS_ENV, "0.3")
    start = time.monotonic()
    pause_after_training(tmp_path, 1)
    pause_after_training(tmp_path, 3)
    assert time.monotonic() - start < 0.2 and list(tmp_path.iterdir()) == []
    start = time.monotonic()
    pause_after_training(tmp_path, 2)
    assert time.monotonic() - start >= 0.3  # bounded: it carries on afterwards
    assert marker_path(tmp_path, 2).read_text().strip() == str(os.getpid())
    assert not marker_path(tmp_path, 4).exists()


def test_pauses_only_in_the_named_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PAUSE_ROUNDS_ENV, "1")
    monkeypatch.setenv(PAUSE_RUN_ENV, "study-a")
    monkeypatch.setenv(PAUSE_SECONDS_ENV, "0.05")
    pause_after_training(tmp_path / "other", 1, "study-b")
    assert not marker_path(tmp_path / "other", 1).exists()
    pause_after_training(tmp_path / "a", 1, "study-a")
    assert marker_path(tmp_path / "a", 1).exists()
