"""common/datasets/datadir.py: where built-in datasets live (argument, $MEDFED_DATA_DIR, home cache)."""

from __future__ import annotations

from common.datasets.datadir import resolve_data_dir

# ----------------------------------------------------------------- data directory

def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDFED_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "medfed" / "datasets"
    monkeypatch.setenv("MEDFED_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "cli") == tmp_path / "cli"
    assert resolve_data_dir("~/x") == tmp_path / "home" / "x"
