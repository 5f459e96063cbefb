"""Following a submitted run: one line per finished round, then where the outputs are.

Two sources, polled at different rates because they cost differently: the run folder (the
ServerApp rewrites metrics.json/privacy.json after every round; reading them is free, every
2 s) and `flwr ls --run-id` (a Flower CLI call, ~1-3 s of CPU each; every 30 s, and every
2 s once the report exists) for the authoritative run status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import FederationError
from server.deploy.settings import CONNECTION
from server.deploy.flwr_cli import flwr_json, flwr_log
from server.deploy.submit import FINISHED_MARKER

FILE_POLL_S = 2.0
STATUS_POLL_S = 30.0
LOST_RETRY_S = 5.0  # after a failed status call, ask again this soon ...
LOST_AFTER_S = 30.0  # ... and give up following after this long without an answer
OUTPUT_FILES = ("report.html", "metrics.json", "metrics.csv", "privacy.json", "global_model.pt", "events.log",
                "synthetic.csv", "synthetic.parquet", "datacard.json")  # the last three: task = synthesize


@dataclass
class RunOutcome:
    run_id: int
    status: str
    out_dir: Path
    details: str = ""
    rounds: list[dict] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status == "finished:completed" and (self.out_dir / FINISHED_MARKER).is_file()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or caught mid-replace: read again next time


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def round_line(record: dict, privacy: dict | None, num_rounds: int) -> list[str]:
    """The progress line(s) for one recorded round."""
    rnd = int(record["round"])
    glob = record.get("global", {})
    source = " (sites' evaluation)" if record.get("global_source") == "federated" else ""
    if rnd == 0:
        if not glob:
            return ["round 0: untrained model; no central test set, baseline comes from the sites' first evaluation"]
        return [f"round 0 (untrained baseline): AUC {_fmt(glob.get('auc'))}  accuracy {_fmt(glob.get('accuracy'))}"]
    scores = f" AUC {_fmt(glob.get('auc'))}  accuracy {_fmt(glob.get('accuracy'))}{source}" if glob else ""
    parts = [f"round {rnd}/{num_rounds}:{scores}"]  # no scores: a synthesis run (a GAN has no accuracy)
    fit = record.get("fit")
    trained = [s for s, m in record.get("sites", {}).items() if m.get("num_train_examples", 0) > 0]
    parts.append(f"sites {fit['sites'] if fit else 0} replied, {len(trained)} trained")
    eps = []
    for site, entry in sorted(((privacy or {}).get("sites") or {}).items()):
        value = (entry.get("epsilon") or {}).get(str(rnd))
        if value is not None:
            eps.append(f"{site} {value:.2f}/{entry.get('budget') or '?'}")
        elif entry.get("status") != "ok":
            eps.append(f"{site} {entry.get('status')}")
    if eps:
        parts.append("epsilon " + ", ".join(eps))
    if duration := record.get("duration_s"):
        parts.append(f"{duration:.0f} s")
    lines = ["  ".join(parts)]
    lines += [f"  event: {text}" for text in record.get("events", [])]
    return lines


class RunFollower:
    def __init__(
        self,
        *,
        run_id: int,
        out_dir: Path,
        env: dict[str, str],
        num_rounds: int,
        echo: Callable[[str], None],
        run_name: str = "<name>",
    ) -> None:
        self.run_id = run_id
        self.run_name = run_name
        self.out_dir = out_dir
        self.env = env
        self.num_rounds = num_rounds
        self.echo = echo
        self.printed: set[int] = set()
        self.last_status = ""
        self.last_error = ""

    def poll_files(self) -> list[dict]:
        metrics = _read_json(self.out_dir / "metrics.json")
        if metrics is None:
            return []
        privacy = _read_json(self.out_dir / "privacy.json")
        rounds = metrics.get("rounds", [])
        for record in rounds:
            rnd = int(record.get("round", -1))
            if rnd not in self.printed:
                self.printed.add(rnd)
                for line in round_line(record, privacy, self.num_rounds):
                    self.echo(line)
        return rounds

    def status(self) -> dict | None:
        """The run's record from the SuperLink; {} while it is not listed yet, None when the
        SuperLink did not answer."""
        res = flwr_json(["ls", CONNECTION, "--run-id", str(self.run_id)], env=self.env, timeout=90)
        if not res.ok:
            self.last_error = str(res.error)
            return None
        runs = res.get("runs")
        if not runs:
            return {}
        record = runs[0]
        status = str(record.get("status", ""))
        if status != self.last_status and not status.startswith("finished"):
            self.echo(f"run {self.run_id}: {status}")
        self.last_status = status
        return record

    def follow(self, timeout: float | None = None) -> RunOutcome:
        start = time.monotonic()
        next_status = 0.0
        lost_since: float | None = None
        while True:
            rounds = self.poll_files()
            now = time.monotonic()
            if now >= next_status:
                record = self.status()
                if record is None:
                    lost_since = lost_since if lost_since is not None else now
                    if now - lost_since >= LOST_AFTER_S:
                        raise self._lost(now - lost_since)
                    next_status = now + LOST_RETRY_S
                    continue
                lost_since = None
                status = str(record.get("status", ""))
                if status.startswith("finished"):
                    rounds = self.poll_files()
                    return RunOutcome(self.run_id, status, self.out_dir, str(record.get("status-details", "")), rounds)
                fast = (self.out_dir / FINISHED_MARKER).exists()
                next_status = now + (FILE_POLL_S if fast else STATUS_POLL_S)
            if timeout and now - start > timeout:
                stopped = flwr_json(["stop", str(self.run_id), CONNECTION], env=self.env, timeout=60)
                raise FederationError(
                    f"Run {self.run_id} did not finish within {timeout:.0f} s; "
                    + ("it was stopped (flwr stop)." if stopped.ok else f"stopping it failed: {stopped.error}")
                    + f"\nLast lines of its log:\n{flwr_log(self.run_id, CONNECTION, env=self.env)}",
                    "check that enough hospitals are connected (`flwr supernode list`), or allow more time.",
                )
            time.sleep(FILE_POLL_S)

    def _lost(self, seconds: float) -> FederationError:
        done = max((r for r in self.printed if r > 0), default=0)
        return FederationError(
            f"Lost contact with the SuperLink: it has not answered for {seconds:.0f} s ({self.last_error}). "
            f"If the server stopped, run {self.run_id} is interrupted; rounds up to {done} are recorded in "
            f"{self.out_dir} (checkpoint included).",
            "restart the server (`medfed server start`, or `systemctl restart medfed-server`) and submit again "
            f"with the same --name {self.run_name}: the run resumes from its last completed round.",
        )


def describe_outputs(out_dir: Path) -> list[str]:
    return [f"  {out_dir / name}" for name in OUTPUT_FILES if (out_dir / name).exists()]


def final_summary(outcome: RunOutcome) -> list[str]:
    """Baseline vs final global metrics and the sites that refused, for the closing lines."""
    lines = []
    rounds = outcome.rounds
    if any(r.get("global") for r in rounds):
        last = rounds[-1].get("global", {})
        first = next((r.get("global", {}) for r in rounds if r.get("global", {}).get("auc") is not None), {})
        lines.append(f"final global AUC {_fmt(last.get('auc'))} (first recorded {_fmt(first.get('auc'))}), "
                     f"accuracy {_fmt(last.get('accuracy'))}")
    privacy = _read_json(outcome.out_dir / "privacy.json") or {}
    sites = privacy.get("sites") or {}
    for status, why in (("budget exhausted", "privacy budget exhausted"), ("refused by site policy", "site policy")):
        refused = sorted(s for s, e in sites.items() if e.get("status") == status)
        if refused:
            lines.append(f"warning: these hospitals refused to train ({why}): {', '.join(refused)}")
    return lines


def failure(outcome: RunOutcome, env: dict[str, str]) -> FederationError:
    missing = "" if (outcome.out_dir / FINISHED_MARKER).exists() else f" and no report was written in {outcome.out_dir}"
    details = f" ({outcome.details})" if outcome.details else ""
    return FederationError(
        f"Run {outcome.run_id} ended {outcome.status or 'in an unknown state'}{details}{missing}.\n"
        f"Last lines of the ServerApp log (flwr log {outcome.run_id}):\n{flwr_log(outcome.run_id, CONNECTION, env=env)}",
        "fix the cause named above and submit again with the same --name to resume it.",
    )
