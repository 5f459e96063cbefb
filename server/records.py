"""What a run leaves behind: per-round metrics, privacy records and resumable checkpoints.

Written after *every* round (atomically), so a server killed mid-run loses at most the round in
flight and restarts from the last completed one. Files in the run folder:
  metrics.json / metrics.csv   global (central), federated (example-weighted) and per-site metrics
  privacy.json                 per site: epsilon after every round, delta, budget, mode; SecAgg+ settings
  checkpoint.npz / .json       global weights, server-optimiser state and the records so far
  events.log                   one line per notable event (quorum misses, refusals, rejections)
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from common.metrics import weighted_mean

Listener = Callable[[str, dict], None]

# Site evaluation values that arrive as JSON text (Flower metrics hold scalars only).
JSON_SITE_KEYS = ("intervals", "confusion")

METRIC_COLUMNS = ("loss", "accuracy", "balanced_accuracy", "auc", "f1", "sensitivity", "specificity")


class RunRecorder:
    def __init__(
        self,
        out_dir: Path,
        *,
        config: dict,
        privacy_mode: str,
        site_names: list[str],
        secure_aggregation: dict,
        client_dp: dict | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.rounds: dict[int, dict] = {}
        self.privacy: dict[str, Any] = {
            "privacy_mode": privacy_mode,
            "sites": {name: {"epsilon": {}, "delta": None, "budget": None, "status": "ok"} for name in site_names},
            "secure_aggregation": secure_aggregation,
        }
        if client_dp is not None:
            self.privacy["client_level_dp"] = client_dp
        self.listeners: list[Listener] = list(listeners)
        self.final_roc: dict | None = None
        # Multiclass only: the latest central evaluation's confusion matrix and per-class values.
        self.final_classes: dict | None = None
        self._lock = threading.Lock()
        self._round_started: dict[int, float] = {}

    # -- events from the workflow / strategy ------------------------------------------------
    def _round(self, rnd: int) -> dict:
        return self.rounds.setdefault(
            rnd, {"round": rnd, "global": {}, "federated": {}, "sites": {}, "events": [], "duration_s": None}
        )

    def _emit(self, kind: str, payload: dict) -> None:
        for listener in list(self.listeners):
            listener(kind, payload)

    def event(self, rnd: int, text: str) -> None:
        with self._lock:
            self._round(rnd)["events"].append(text)
            with open(self.out_dir / "events.log", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} round {rnd}: {text}\n")
        self._emit("event", {"round": rnd, "text": text})

    def start_round(self, rnd: int) -> None:
        self._round_started[rnd] = time.monotonic()
        self._round(rnd)
        self._emit("round_start", {"round": rnd})

    def on_fit_results(self, server_round: int, site_metrics: list[tuple[int, dict]], failures: list[str]) -> None:
        with self._lock:
            r = self._round(server_round)
            r["fit"] = {"sites": len(site_metrics), "failures": len(failures)}
            for n, m in site_metrics:
                site = str(m.get("site", "?"))
                entry = r["sites"].setdefault(site, {})
                entry["num_train_examples"] = int(n)
                for key in ("train_loss", "epsilon", "update_scaled"):
                    if key in m:
                        entry[key] = m[key]
                ledger = self.privacy["sites"].setdefault(
                    site, {"epsilon": {}, "delta": None, "budget": None, "status": "ok"}
                )
                if "epsilon" in m:
                    ledger["epsilon"][str(server_round)] = float(m["epsilon"])
                    ledger["delta"] = float(m.get("delta", ledger["delta"] or 0.0))
                    ledger["budget"] = float(m.get("epsilon_budget", ledger["budget"] or 0.0))
                if "refused" in m:
                    by_policy = m.get("refused_by") == "site policy"
                    ledger["status"] = "refused by site policy" if by_policy else "budget exhausted"
                    entry["refused"] = str(m["refused"])
        for n, m in site_metrics:
            if "refused" in m:
                self.event(server_round, f"site {m.get('site')} refused to train: {m['refused']}")
            if int(m.get("update_scaled", 0)):
                self.event(server_round, f"site {m.get('site')} update scaled to the SecAgg+ update bound")
        for failure in failures:
            self.event(server_round, f"training failure: {failure}")
        self._emit("fit_done", {"round": server_round, "sites": len(site_metrics), "failures": len(failures)})

    def on_evaluate_results(
        self, server_round: int, site_metrics: list[tuple[int, float, dict]], failures: list[str]
    ) -> None:
        with self._lock:
            r = self._round(server_round)
            released = [(n, loss, m) for n, loss, m in site_metrics if "withheld" not in m]
            for n, loss, m in site_metrics:
                site = str(m.get("site", "?"))
                entry = r["sites"].setdefault(site, {})
                if "withheld" in m:  # the site's policy does not release its evaluation metrics
                    entry["evaluation_withheld"] = str(m["withheld"])
                    continue
                entry.update({k: _parsed(v) if k in JSON_SITE_KEYS else v for k, v in m.items() if k != "site"})
                entry["loss"] = loss
                entry["num_test_examples"] = n
            r["federated"] = weighted_mean((n, {"loss": loss, **m}) for n, loss, m in released)
            r["federated"]["num_examples"] = sum(n for n, _, _ in released)
        for failure in failures:
            self.event(server_round, f"evaluation failure: {failure}")

    def on_central_evaluation(
        self, server_round: int, loss: float, metrics: dict, roc: dict | None, details: dict | None = None
    ) -> None:
        """`details`: the central test's intervals, confusion matrix, calibration and reliability bins."""
        with self._lock:
            r = self._round(server_round)
            r["global"] = {"loss": loss, **metrics}
            if details:
                r["global_details"] = details
            if roc is not None:
                self.final_roc = roc

    def on_operating_point(self, server_round: int, point: dict) -> None:
        """The round's threshold and temperature, chosen on validation data (server/operating.py)."""
        with self._lock:
            self._round(server_round)["operating_point"] = point
        if point.get("source") == "default" and server_round > 0:
            self.event(server_round, f"operating point left at the default 0.5: {point.get('note')}")

    def on_rejected_update(self, server_round: int, site: str, reason: str) -> None:
        self.event(server_round, f"update from {site} rejected before aggregation: {reason}")

    def quorum_not_reached(self, server_round: int, *, available: int, needed: int) -> None:
        with self._lock:
            self._round(server_round)["quorum_not_reached"] = {"available": available, "needed": needed}
        self.event(
            server_round,
            f"quorum not reached: {available} site(s) available, {needed} needed; global model unchanged",
        )

    def end_round(self, rnd: int, *, weights: list[np.ndarray] | None, optimizer_state: dict | None) -> None:
        started = self._round_started.get(rnd)
        with self._lock:
            r = self._round(rnd)
            if started is not None:
                r["duration_s"] = round(time.monotonic() - started, 3)
            if rnd > 0 and "fit" not in r and "quorum_not_reached" not in r:
                r["events"].append("no aggregate this round (secure aggregation halted or no site replied)")
            if not r["global"] and r["federated"]:
                r["global"] = {k: v for k, v in r["federated"].items() if k != "num_examples"}
                r["global_source"] = "federated"
            elif r["global"]:
                r["global_source"] = "central"
        self.write()
        if weights is not None:
            self.checkpoint(rnd, weights, optimizer_state or {})
        self._emit("round_end", {"round": rnd, "record": r, "privacy": self.privacy})

    def finished(self, files: Mapping[str, Path]) -> None:
        """Tell the listeners the run is over and which files it left (the live display's cue)."""
        self._emit("finished", {"out_dir": str(self.out_dir), "files": {k: str(v) for k, v in files.items()}})

    # -- documents and files ---------------------------------------------------------------------
    def metrics_document(self) -> dict:
        """What metrics.json holds; the final outputs use it directly instead of reading the file back."""
        with self._lock:
            return self._metrics_document()

    def privacy_document(self) -> dict:
        """What privacy.json holds."""
        with self._lock:
            return _clean(self.privacy)

    def _metrics_document(self) -> dict:
        rounds = [self.rounds[k] for k in sorted(self.rounds)]
        last = rounds[-1] if rounds else {}
        final = {"round": last.get("round"), "global": last.get("global", {}), "sites": last.get("sites", {})}
        for key in ("global_source", "operating_point", "global_details"):
            if key in last:
                final[key] = last[key]
        if self.final_classes:
            final_classes = {"final_classes": _clean(self.final_classes)}
        else:
            final_classes = {}
        return {"config": self.config, "rounds": _clean(rounds), "final": _clean(final)} | final_classes

    def write(self) -> None:
        with self._lock:  # one snapshot, so metrics.json and privacy.json describe the same moment
            doc = self._metrics_document()
            privacy = _clean(self.privacy)
        atomic_write_json(self.out_dir / "metrics.json", doc)
        atomic_write_text(self.out_dir / "metrics.csv", _metrics_csv(doc["rounds"]))
        atomic_write_json(self.out_dir / "privacy.json", privacy)

    def checkpoint(self, rnd: int, weights: list[np.ndarray], optimizer_state: dict) -> None:
        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(weights)}
        for key, values in optimizer_state.items():
            for i, value in enumerate(values):
                arrays[f"opt__{key}__{i}"] = np.asarray(value)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.out_dir / "checkpoint.npz", buf.getvalue())
        with self._lock:
            state = {"round": rnd, "rounds": _clean(self.rounds), "privacy": _clean(self.privacy)}
        atomic_write_json(self.out_dir / "checkpoint.json", state)

    def restore(self, state: dict) -> None:
        """Load records from a checkpoint (rounds after its round are dropped)."""
        done = int(state["round"])
        self.rounds = {int(k): v for k, v in state["rounds"].items() if int(k) <= done}
        saved_privacy = state["privacy"]
        for site, entry in saved_privacy.get("sites", {}).items():
            entry["epsilon"] = {r: e for r, e in entry.get("epsilon", {}).items() if int(r) <= done}
            self.privacy["sites"][site] = entry


def load_checkpoint(out_dir: Path) -> tuple[dict, list[np.ndarray], dict] | None:
    """(state, weights, optimizer_state) of the last completed round, or None."""
    meta, data = Path(out_dir) / "checkpoint.json", Path(out_dir) / "checkpoint.npz"
    if not (meta.exists() and data.exists()):
        return None
    state = json.loads(meta.read_text())
    with np.load(data) as npz:
        weights = [npz[f"w{i}"] for i in range(sum(1 for k in npz.files if k.startswith("w")))]
        optimizer: dict[str, list[np.ndarray]] = {}
        for key in sorted(k for k in npz.files if k.startswith("opt__")):
            _, name, idx = key.split("__")
            optimizer.setdefault(name, []).append((int(idx), npz[key]))  # type: ignore[arg-type]
    opt = {name: [v for _, v in sorted(items, key=lambda t: t[0])] for name, items in optimizer.items()}  # type: ignore
    return state, weights, opt


def _metrics_csv(rounds: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["round", "scope", *METRIC_COLUMNS, "epsilon", "train_loss"])
    for r in rounds:
        writer.writerow([r["round"], "global", *[_fmt(r["global"].get(c)) for c in METRIC_COLUMNS], "", ""])
        for site, m in sorted(r["sites"].items()):
            writer.writerow(
                [r["round"], site, *[_fmt(m.get(c)) for c in METRIC_COLUMNS], _fmt(m.get("epsilon")), _fmt(m.get("train_loss"))]
            )
    return buf.getvalue()


def _parsed(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, int keys -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
