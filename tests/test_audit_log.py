"""client/privacy/audit.py: the site's hash-chained audit log detects every kind of damage and names
the first bad record; appends from two processes keep one valid chain."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from client.privacy.audit import GENESIS, AuditLog, record_hash, release_digest
from common.errors import DataError
from common.node_config import AUDIT_HEAD_FILE, AUDIT_LOG_FILE


def _log(tmp_path: Path, n: int = 4) -> AuditLog:
    log = AuditLog(tmp_path / AUDIT_LOG_FILE)
    for i in range(1, n + 1):
        log.append(run="heart-a", round=i, message_type="train", decision="trained",
                   epsilon_run_before=0.5 * (i - 1), epsilon_run_after=0.5 * i,
                   epsilon_total_before=0.5 * (i - 1), epsilon_total_after=0.5 * i,
                   released=release_digest([np.full(3, i, np.float32)], {"epsilon": 0.5 * i}))
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def _rewrite(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(lines))


def test_records_chain_onto_each_other_and_the_head_names_the_last(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    assert log.head_path.name == AUDIT_HEAD_FILE
    records = log.records()
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS and records[1]["prev"] == records[0]["hash"]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert records[2]["released"]["items"] == ["update", "epsilon"]
    head = json.loads(log.head_path.read_text())
    assert (head["seq"], head["hash"]) == (3, records[2]["hash"])
    verdict = log.verify()
    assert verdict.ok and verdict.count == 3 and verdict.problem == ""
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_an_empty_log_is_intact_and_a_refusal_says_why(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / AUDIT_LOG_FILE)
    assert log.verify().ok and log.verify().count == 0 and log.records() == []
    log.check_tail()
    record = log.append(run="r", round=1, message_type="train", decision="refused",
                        reason="the run asks for privacy-mode none, which this site does not allow")
    assert record["released"] == {"items": [], "bytes": 0, "sha256": release_digest([], {})["sha256"]}
    zero = log.append(run="r", round=1, message_type="train", decision="refused", reason="x",
                      released=release_digest([np.zeros(2)], {"refused": "x"}))
    assert zero["released"]["items"] == ["update", "refused"]  # what the weight-0 answer held, said exactly
    with pytest.raises(ValueError, match="must say why"):
        log.append(run="r", round=1, message_type="train", decision="refused")
    with pytest.raises(ValueError, match="decision"):
        log.append(run="r", round=1, message_type="train", decision="maybe")
    with pytest.raises(ValueError, match="epsilon"):
        log.append(run="r", round=1, message_type="train", decision="trained", epsilon_run_after=float("nan"))
    assert log.verify().count == 2  # rejected calls wrote nothing
    record = log.append(run="r", round=np.int64(2), message_type="train", decision="trained",
                        epsilon_run_after=np.float32(0.25))
    assert (record["round"], record["epsilon_run_after"]) == (2, 0.25) and log.verify().ok


def test_release_digest_covers_arrays_and_metrics() -> None:
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)]
    a = release_digest(arrays, {"num-examples": 10, "epsilon": np.float64(0.5)})
    assert a["items"] == ["update", "epsilon", "num-examples"]
    assert a["bytes"] > 24 + 16 and len(a["sha256"]) == 64
    assert a == release_digest([x.copy() for x in arrays], {"epsilon": 0.5, "num-examples": 10})
    assert a["sha256"] != release_digest([arrays[0].T, arrays[1]], {"num-examples": 10, "epsilon": 0.5})["sha256"]
    assert a["sha256"] != release_digest(arrays, {"num-examples": 11, "epsilon": 0.5})["sha256"]
    assert release_digest([], {"accuracy": 0.9})["items"] == ["accuracy"]


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1] = lines[1].replace('"epsilon_run_after":1.0', '"epsilon_run_after":0.1')
    _rewrite(log, lines)
    verdict = log.verify()
    assert not verdict.ok and (verdict.first_bad_seq, verdict.first_bad_line) == (2, 2)
    assert "edited" in verdict.problem
    with pytest.raises(DataError, match=r"record seq 2 \(line 2\) was edited") as err:
        verdict.raise_if_broken()
    assert "restore" in err.value.fix


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    record = json.loads(lines[1])
    record["reason"] = "forged"
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record) + "\n"
    _rewrite(log, lines)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3) and "does not chain" in verdict.problem


def test_a_removed_record_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    _rewrite(log, lines)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq, verdict.first_bad_line) == (False, 2, 2)
    assert "holds seq 3 where seq 2 belongs" in verdict.problem


def test_a_reordered_pair_is_named(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _rewrite(log, lines)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 2) and "reordered" in verdict.problem


def test_a_truncated_last_line_is_named_and_stops_appends(tmp_path: Path) -> None:
    log = _log(tmp_path)
    text = log.path.read_text()
    log.path.write_text(text[: len(text) - 40])
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq, verdict.first_bad_line) == (False, 4, 4)
    assert "incomplete" in verdict.problem
    with pytest.raises(DataError, match="last line is incomplete"):
        log.check_tail()
    with pytest.raises(DataError, match="incomplete"):
        log.append(run="heart-a", round=5, message_type="train", decision="trained")
    with pytest.raises(DataError, match="line 4 is not a complete audit record"):
        log.records()


def test_whole_records_cut_off_the_end_are_caught_by_the_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _rewrite(log, _lines(log)[:2])  # the chain of 2 is itself intact
    verdict = log.verify()
    assert (verdict.ok, verdict.count, verdict.first_bad_seq, verdict.first_bad_line) == (False, 2, 3, 3)
    assert "records 3..4 were cut off" in verdict.problem
    with pytest.raises(DataError, match=r"records 3\.\.4 were cut off"):
        log.append(run="heart-a", round=5, message_type="train", decision="trained")
    assert len(_lines(log)) == 2  # nothing was appended to the broken log


def test_a_missing_log_or_head_is_an_error(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    head = log.head_path.read_text()
    log.path.unlink()
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 1) and "head says 2" in verdict.problem
    with pytest.raises(DataError, match="missing or empty"):
        log.check_tail()

    log = _log(tmp_path / "b", 3)
    log.head_path.unlink()
    assert not log.verify().ok and "head file" in log.verify().problem
    with pytest.raises(DataError, match="head file .* is missing"):
        log.append(run="heart-a", round=4, message_type="train", decision="trained")
    log.head_path.write_text(head.replace('"seq"', '"sq"'))
    with pytest.raises(DataError, match="no valid seq"):
        log.check_tail()


def test_a_crash_between_the_log_and_the_head_write_is_accepted(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    old_head = log.head_path.read_text()
    log.append(run="heart-a", round=3, message_type="evaluate", decision="evaluated")
    log.head_path.write_text(old_head)  # the head write "never happened"
    assert log.verify().ok and log.verify().count == 3
    record = log.append(run="heart-a", round=4, message_type="train", decision="trained")
    assert record["seq"] == 4 and log.verify().ok
    assert json.loads(log.head_path.read_text())["seq"] == 4


def test_an_edited_last_record_stops_appends(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    lines = _lines(log)
    lines[-1] = lines[-1].replace('"decision":"trained"', '"decision":"refused"')
    _rewrite(log, lines)
    with pytest.raises(DataError, match="last record .* was edited"):
        log.append(run="heart-a", round=3, message_type="train", decision="trained")


def _append_many(path: str, who: str, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.append(run=who, round=i, message_type="train", decision="trained")


def test_appends_from_two_processes_keep_one_valid_chain(tmp_path: Path) -> None:
    path = str(tmp_path / AUDIT_LOG_FILE)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, who, 25)) for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = AuditLog(path)
    verdict = log.verify()
    assert verdict.ok and verdict.count == 50, verdict.problem
    runs = [r["run"] for r in log.records()]
    assert runs.count("a") == 25 and runs.count("b") == 25
