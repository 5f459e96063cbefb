"""The site's audit log: one hash-chained JSON line for every request the site answers.

Why: a hospital must be able to show, after the fact and without trusting the server's records,
what left the site for each request, what it refused and why, and what each answer cost of its
privacy budget. The log lives in the site's state dir (`AUDIT_LOG_FILE`), one JSON object per
line, line n holding record `seq` n:

    seq, time, run, round, message_type, decision, reason,
    epsilon_run_before, epsilon_run_after, epsilon_total_before, epsilon_total_after,
    released {items, bytes, sha256}, prev, hash

`hash` is the sha256 of the record without `hash` as canonical JSON (sorted keys, no spaces,
UTF-8); `prev` is the previous record's hash (`GENESIS` for seq 1). An edited, removed or
reordered record breaks the chain at that record. Whole records cut off the end do not, so a
head file next to the log (`AUDIT_HEAD_FILE`: last seq and hash, replaced atomically after each
append) says where the log must end.

Rules for the caller (the ClientApp):

* `append` the record *before* the reply leaves the site; if it raises, release nothing. It
  first checks the log's last record against the head (constant time), so a site whose log was
  truncated or whose last record was edited stops answering until the log is restored.
* `check_tail()` is that check alone: call it before training, so a broken log costs no budget.
* `verify()` reads the whole chain (`medfed client audit --verify`).

Crash safety: the line is written with one O_APPEND write and fsync'ed, then the head is
replaced. A crash between the two leaves the log one record ahead of a head it chains onto:
accepted, and the head catches up at the next append. A crash in the middle of the write leaves
an incomplete last line: refused, since a log that may have lost data must be looked at by a
person (the record was never acknowledged, so nothing was released with it).

What the chain cannot do: whoever can write the state dir can rewrite the whole log, every hash
and the head. It catches accidents, careless edits and truncation; against a local
administrator, keep copies off the machine (backups or a log shipper; docs/PRIVACY.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from common.atomic import atomic_write_json
from common.errors import DataError

GENESIS = "0" * 64
HEAD_FORMAT = "medfed-audit-head"
HEAD_VERSION = 1
DECISIONS = ("trained", "refused", "evaluated", "withheld", "answered")
FIELDS = (
    "seq", "time", "run", "round", "message_type", "decision", "reason",
    "epsilon_run_before", "epsilon_run_after", "epsilon_total_before", "epsilon_total_after",
    "released", "prev", "hash",
)  # fmt: skip
_TAIL_BLOCK = 8192


def _canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
    ).encode("utf-8")


def _plain(obj: Any) -> Any:
    """numpy scalars become Python numbers, bytes become hex: metrics as Flower carries them."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of `record` without its `hash` field."""
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def release_digest(arrays: Sequence[np.ndarray], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What a reply releases, for the `released` field: names, payload size and one sha256.

    The digest covers, in order, each array as `dtype.str + repr(shape) + ";"` then its C-order
    bytes, then the canonical JSON of `metrics` (when not empty); `bytes` is the arrays' size
    plus that JSON's. One pass of sha256, no copy for contiguous arrays: cheap next to training.
    """
    digest = hashlib.sha256()
    size = 0
    for array in arrays:
        array = np.asarray(array)
        digest.update(f"{array.dtype.str}{array.shape!r};".encode())
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        size += array.nbytes
    if metrics:
        blob = _canonical(dict(metrics))
        digest.update(blob)
        size += len(blob)
    items = (["update"] if len(arrays) else []) + sorted(metrics)
    return {"items": items, "bytes": size, "sha256": digest.hexdigest()}


@dataclass(frozen=True)
class AuditVerdict:
    """The result of reading the whole chain: `ok`, how many records, and the first bad one
    (its seq and line number; both None when the problem is the head file itself)."""

    path: str
    ok: bool
    count: int
    first_bad_seq: int | None = None
    first_bad_line: int | None = None
    problem: str = ""

    def raise_if_broken(self) -> None:
        """The DataError naming the first bad record and the fix, when the chain is broken."""
        if not self.ok:
            raise _broken(Path(self.path), self.problem)


def _broken(path: Path, problem: str) -> DataError:
    return DataError(
        f"The audit log {path} fails verification: {problem}",
        f"restore {path.name} and {path.with_suffix('.head.json').name} together from this site's backup "
        "(`medfed client audit --verify` names the first bad record). The site releases nothing "
        "while its audit log is broken. If the machine crashed while writing, an incomplete last line "
        "was never acknowledged and nothing left with it: keep a copy, then remove only that line.",
    )


class _Broken(Exception):
    """Internal: one problem sentence; the public methods turn it into a DataError or a verdict."""


class AuditLog:
    """Append-only, hash-chained JSON lines at `path`, with its head file next to it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head.json")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def _broken(self, problem: str) -> DataError:
        return _broken(self.path, problem)

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, kind)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ reading

    def _read_head(self) -> tuple[int, str] | None:
        try:
            raw = json.loads(self.head_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise _Broken(f"its head file {self.head_path} cannot be read ({err}).") from None
        if not isinstance(raw, dict) or raw.get("format") != HEAD_FORMAT or raw.get("version") != HEAD_VERSION:
            raise _Broken(f"its head file {self.head_path} is not a {HEAD_FORMAT} file of version {HEAD_VERSION}.")
        seq, digest = raw.get("seq"), raw.get("hash")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not isinstance(digest, str):
            raise _Broken(f"its head file {self.head_path} has no valid seq and hash.")
        return seq, digest

    def _last_line(self) -> bytes | None:
        """The log's last line (with its newline, if it has one); None for a missing or empty log."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return None
        with fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return None
            tail, pos = b"", end
            while pos > 0:
                step = min(_TAIL_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                tail = fh.read(step) + tail
                cut = tail.rfind(b"\n", 0, len(tail) - 1)
                if cut >= 0:
                    return tail[cut + 1:]
            return tail

    def _tail(self) -> tuple[int, str]:
        """(last seq, last hash) after checking the last record against the head; raises _Broken.

        A missing head counts as "no record yet", so a crash between the very first log write and
        the first head write is the same accepted one-record lag as any later one."""
        head = self._read_head()
        head_seq, head_hash = head or (0, GENESIS)
        line = self._last_line()
        if line is None:
            if head_seq:
                raise _Broken(f"the log is missing or empty, but its head says it holds {head_seq} record(s).")
            return 0, GENESIS
        if not line.endswith(b"\n"):
            raise _Broken(f"its last line is incomplete (the last record its head names is seq {head_seq}).")
        record = _parse(line)
        if record is None or record_hash(record) != record["hash"]:
            raise _Broken(f"its last record (after seq {head_seq} by its head) was edited or is not a record.")
        seq = record["seq"]
        if (seq, record["hash"]) == (head_seq, head_hash):
            return seq, record["hash"]
        if seq == head_seq + 1 and record["prev"] == head_hash:  # crashed between log and head writes
            return seq, record["hash"]
        if head is None:
            raise _Broken(f"its head file {self.head_path} is missing, so the log's end cannot be checked.")
        if seq < head_seq:
            raise _Broken(f"records {seq + 1}..{head_seq} were cut off its end (its head says {head_seq}).")
        raise _Broken(f"its last record (seq {seq}) does not match its head (seq {head_seq}).")

    def check_tail(self) -> None:
        """Constant-time check that the log still ends where its head says; DataError if not."""
        with self._locked(fcntl.LOCK_SH):
            try:
                self._tail()
            except _Broken as err:
                raise self._broken(str(err)) from None

    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return []

    def records(self) -> list[dict[str, Any]]:
        """Every record, in file order. A line that is not a complete record is a DataError naming
        it; whether the chain holds is `verify()`'s job."""
        with self._locked(fcntl.LOCK_SH):
            lines = self._lines()
        out = []
        for number, line in enumerate(lines, start=1):
            record = _parse(line)
            if record is None or not line.endswith(b"\n"):
                raise self._broken(f"line {number} is not a complete audit record.")
            out.append(record)
        return out

    def verify(self) -> AuditVerdict:
        """Read the whole chain, then check its end against the head; the verdict names the first
        bad record."""
        with self._locked(fcntl.LOCK_SH):
            lines = self._lines()
            try:
                head: tuple[int, str] | None | str = self._read_head()
            except _Broken as err:
                head = str(err)
        prev, last_prev, count = GENESIS, GENESIS, 0
        for number, line in enumerate(lines, start=1):
            record = _parse(line)
            if not line.endswith(b"\n"):
                bad = f"line {number} (seq {number}) is incomplete: the log was cut in the middle of a record."
            elif record is None:
                bad = f"line {number} (seq {number}) is not a JSON record with the audit fields."
            elif record["seq"] != number:
                bad = (f"line {number} holds seq {record['seq']} where seq {number} belongs: "
                       "a record was removed or records were reordered.")
            elif record["prev"] != prev:
                bad = f"record seq {number} (line {number}) does not chain onto the record before it."
            elif record_hash(record) != record["hash"]:
                bad = f"record seq {number} (line {number}) was edited: its hash does not match its content."
            else:
                last_prev, prev, count = prev, record["hash"], number
                continue
            return AuditVerdict(str(self.path), False, count, number, number, bad)
        if isinstance(head, str):
            return AuditVerdict(str(self.path), False, count, None, None, head)
        head_seq, head_hash = head or (0, GENESIS)
        if (count, prev) == (head_seq, head_hash) or (count == head_seq + 1 and last_prev == head_hash):
            return AuditVerdict(str(self.path), True, count)
        if head is None:
            return AuditVerdict(str(self.path), False, count, None, None,
                                f"its head file {self.head_path} is missing, so the log's end cannot be checked.")
        if count < head_seq:
            return AuditVerdict(str(self.path), False, count, count + 1, count + 1,
                                f"records {count + 1}..{head_seq} were cut off its end (its head says {head_seq}).")
        return AuditVerdict(str(self.path), False, count, count, count,
                            f"its last record (seq {count}) does not match its head (seq {head_seq}).")

    # ------------------------------------------------------------------ writing

    def append(
        self,
        *,
        run: str,
        round: int | None,
        message_type: str,
        decision: str,
        reason: str = "",
        epsilon_run_before: float | None = None,
        epsilon_run_after: float | None = None,
        epsilon_total_before: float | None = None,
        epsilon_total_after: float | None = None,
        released: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one record (after checking the log's end) and return it, `seq` and `hash` filled in.

        `released` comes from `release_digest` (nothing released when omitted); a refusal must say
        why. A refused training request still answers, with weight 0 and no data-derived update
        (the global weights back, or under SecAgg+ the site's masked share of a zero vector, so
        the round can finish without it): `released` says exactly what that answer held.
        Serialised across processes by a lock file; fsync'ed.
        """
        released = release_digest([], {}) if released is None else dict(released)
        _check_fields(decision, reason, message_type, released,
                      (epsilon_run_before, epsilon_run_after, epsilon_total_before, epsilon_total_after))
        with self._locked(fcntl.LOCK_EX):
            try:
                seq, prev = self._tail()
            except _Broken as err:
                raise self._broken(str(err)) from None
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "run": str(run),
                "round": None if round is None else int(round),
                "message_type": message_type,
                "decision": decision,
                "reason": reason,
                "epsilon_run_before": _float(epsilon_run_before),
                "epsilon_run_after": _float(epsilon_run_after),
                "epsilon_total_before": _float(epsilon_total_before),
                "epsilon_total_after": _float(epsilon_total_after),
                "released": released,
                "prev": prev,
            }
            record["hash"] = record_hash(record)
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"
            self._write_line(line.encode("utf-8"))
            # 0600: the log names runs and decisions; it is the site's record, not for other local users.
            atomic_write_json(self.head_path, {"format": HEAD_FORMAT, "version": HEAD_VERSION,
                                               "seq": record["seq"], "hash": record["hash"]}, mode=0o600)
            return record

    def _write_line(self, data: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # make the new file's name durable too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _parse(line: bytes) -> dict[str, Any] | None:
    """A record with every audit field and an integer seq, or None."""
    try:
        record = json.loads(line, parse_constant=_no_constant)  # NaN would not hash canonically
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or set(record) != set(FIELDS):
        return None
    seq = record["seq"]
    return record if isinstance(seq, int) and not isinstance(seq, bool) else None


def _float(value: float | None) -> float | None:
    """numpy floats (float32 is not JSON) as Python floats, which round-trip exactly through JSON."""
    return None if value is None else float(value)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in an audit record")


def _check_fields(decision: str, reason: str, message_type: str, released: dict[str, Any],
                  epsilons: tuple[float | None, ...]) -> None:
    """Caller mistakes (a programming error in the ClientApp, not a site problem): ValueError."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
    if not message_type:
        raise ValueError("message_type is empty")
    if decision == "refused" and not reason:
        raise ValueError("a refusal must say why (reason)")
    if set(released) != {"items", "bytes", "sha256"}:
        raise ValueError(f"released {released!r} is not a release_digest() result")
    for eps in epsilons:
        if eps is not None and (isinstance(eps, bool) or not math.isfinite(eps) or eps < 0):
            raise ValueError(f"epsilon {eps!r} is not a finite non-negative number")
