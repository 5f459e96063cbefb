"""Secure aggregation cost: round wall time and bytes with and without SecAgg+.

Part "grid" -- SecAgg+'s own cost. Simulated hospitals do trivial local work: each returns the
global weights plus a fixed, bounded update (as in tests/test_secagg_aggregate.py), through
medfed's real client mods (SecAgg+ masking, update encoding), medfed's strategy
(`GuardedStrategy` over FedAvg) and round loop (`MedfedWorkflow`), with the fit step
either Flower's `SecAggPlusWorkflow` configured by `server.secure_aggregation` or medfed's plain
fit step. One Flower simulation (Ray) with max(n) hospitals; each round samples n of them, and
rounds of every (n, size, mode) cell are interleaved (plain/secagg order alternated every
repetition) so all cells see the same machine load. Round time = the fit step alone (federated evaluation is off). SecAgg+'s
own cost = secagg round - plain round, paired by repetition; its growth exponent in n is the
log-log slope, compared with the slope n*log(n) itself has over the same n.

Bytes: an outermost client mod sums the protobuf-serialised size (`recorddict_to_proto(...)
.ByteSize()`, what gRPC would carry) of every message a hospital receives and sends in one
round. It only measures during a dedicated, untimed round per cell (serialising 5M-parameter
messages takes time of its own), switched on by a flag file.

Part "default" -- SecAgg+ on a round of the default simulation (`medfed simulate` defaults:
PneumoniaMNIST, 4 hospitals, Dirichlet alpha 1, sample-level DP epsilon 8 with ghost clipping,
2 local epochs, batch 128), same seed. The on and off federations run at the same time, side by
side (two processes, each its own Ray), so both see the same load round for round; the pair is
repeated with the start order swapped. Per-round `duration_s` from metrics.json, paired by round
number; round 1 (which also starts the Ray workers, builds clients and calibrates noise) is left
out.

Run from the repository root:  python benchmarks/secagg_overhead.py [--quick] [--part grid|default|all]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

BYTES_LOG_ENV = "MEDFED_BENCH_BYTES_LOG"
BYTES_FLAG_ENV = "MEDFED_BENCH_BYTES_FLAG"
EXAMPLES = 100  # every trivial hospital reports this many examples
UPDATE_SCALE = 0.5  # |fixed update| <= 0.5, inside medfed's default update bound (4.0)
SIZES = {"0.1M": 100_000, "1M": 1_000_000, "5M": 5_000_000}
TARGET_DEFAULT_OVERHEAD = 0.20


def shapes_for(params: int) -> list[tuple[int, ...]]:
    """A weight matrix plus a bias, `params` scalars in all (like one big linear layer)."""
    return [(params // 1000 - 1, 1000), (1000,)]


# ----------------------------------------------------------------------------- client side


_UPDATES: dict[tuple, list[np.ndarray]] = {}


def _fixed_update(index: int, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    key = (index, tuple(shapes))
    if key not in _UPDATES:
        rng = np.random.default_rng(1000 + index)
        _UPDATES[key] = [rng.uniform(-UPDATE_SCALE, UPDATE_SCALE, size=s).astype(np.float32) for s in shapes]
    return _UPDATES[key]


def _make_client_app():
    from flwr.app import Context
    from flwr.client import Client, NumPyClient
    from flwr.clientapp import ClientApp

    from client.mods import PROTOCOL_MODS

    class FixedClient(NumPyClient):
        def __init__(self, index: int) -> None:
            self.index = index

        def fit(self, parameters, config):
            update = _fixed_update(self.index, [p.shape for p in parameters])
            return [p + d for p, d in zip(parameters, update)], EXAMPLES, {"site": f"site-{self.index}"}

        def evaluate(self, parameters, config):
            return 0.0, 1, {"site": f"site-{self.index}"}

    def client_fn(context: Context) -> Client:
        return FixedClient(int(context.node_config["partition-id"])).to_client()

    return ClientApp(client_fn=client_fn, mods=[bytes_mod, *PROTOCOL_MODS])


def bytes_mod(msg, ctxt, call_next):
    """Outermost mod: log the serialised size of what this hospital receives and sends, but
    only while the driver's flag file exists (measurement rounds are not timed)."""
    flag = os.environ.get(BYTES_FLAG_ENV, "")
    if not flag or not os.path.exists(flag):
        return call_next(msg, ctxt)
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
    from flwr.common.serde import recorddict_to_proto

    stage = "fit"
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        stage = str(msg.content.config_records[RECORD_KEY_CONFIGS].get("stage", "?"))
    received = recorddict_to_proto(msg.content).ByteSize()
    out = call_next(msg, ctxt)
    sent = recorddict_to_proto(out.content).ByteSize() if out.has_content() else 0
    line = json.dumps({"node": int(ctxt.node_id), "stage": stage, "received": received, "sent": sent})
    with open(os.environ[BYTES_LOG_ENV], "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return out


# ----------------------------------------------------------------------------- server side


class _Null:
    def __getattr__(self, name):
        return lambda *a, **k: None


class RoundRunner:
    """Runs single fit rounds inside one ServerApp run, on `n` of the simulation's hospitals.

    One `LegacyContext` and one client-manager thread serve every round (Flower's thread only
    registers nodes every 5 s, so a fresh one per round would add up to 5 s of idle waiting);
    each round gets a fresh medfed strategy sampling exactly `n` hospitals, the global weights
    of the requested size, and either `SecAggPlusWorkflow` (medfed's settings for `n` sites) or
    medfed's plain fit step. Only the fit step is timed.
    """

    def __init__(self, grid, context, total: int) -> None:
        from flwr.server import LegacyContext, ServerConfig
        from flwr.server.compat.app_utils import start_update_client_manager_thread

        self.grid, self.total, self.round = grid, total, 0
        self.ctx = LegacyContext(context, config=ServerConfig(num_rounds=1))
        self.thread, self.stop, registered = start_update_client_manager_thread(grid, self.ctx.client_manager)
        registered.wait()
        deadline = time.monotonic() + 120
        while self.ctx.client_manager.num_available() < total:  # num_available() forces a node update
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.ctx.client_manager.num_available()} of {total} hospitals registered")
            time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()

    def fit_round(self, *, n: int, params: int, secure: bool) -> float:
        from flwr.app import ConfigRecord
        from flwr.common import ndarrays_to_parameters
        from flwr.compat.common import recorddict_compat as compat
        from flwr.server.strategy import FedAvg
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

        from common.config import PrivacyConfig, SecAggConfig
        from common.updates import nbytes
        from server.secure_aggregation import secagg_settings, secagg_workflow
        from server.strategies import GuardedStrategy, UpdateGate
        from server.workflow import plain_fit_workflow

        settings = secagg_settings(SecAggConfig(), PrivacyConfig(), num_sites=n, largest_site=EXAMPLES)
        initial = [np.zeros(s, dtype=np.float32) for s in shapes_for(params)]
        self.ctx.strategy = GuardedStrategy(
            FedAvg(fraction_fit=n / self.total + 1e-9, fraction_evaluate=0.0, min_fit_clients=n,
                   min_available_clients=n, initial_parameters=ndarrays_to_parameters(initial)),
            initial_weights=initial,
            gate=UpdateGate(update_bound=settings.clipping_range, secure=secure, max_update_bytes=4 * nbytes(initial) + 1024),
            observer=_Null(),
            min_sites=n,
        )
        self.round += 1
        self.ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(initial), True)
        cfg = ConfigRecord()
        cfg[Key.START_TIME] = time.perf_counter()
        cfg[Key.CURRENT_ROUND] = self.round
        self.ctx.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        fit = secagg_workflow(settings, timeout=600) if secure else plain_fit_workflow(600)
        aggregated = []
        self.ctx.strategy.observer = _Counter(aggregated)
        started = time.perf_counter()
        fit(self.grid, self.ctx)
        seconds = time.perf_counter() - started
        if not aggregated or aggregated[0] != n:
            raise RuntimeError(f"round n={n} params={params} secure={secure}: {aggregated} results, expected {n}")
        return seconds


class _Counter(_Null):
    """Observer that records how many results reached the strategy (a round must aggregate n)."""

    def __init__(self, sink: list) -> None:
        self.sink = sink

    def on_fit_results(self, server_round, site_metrics, failures) -> None:
        self.sink.append(len(site_metrics))


def _read_bytes(log: Path) -> dict:
    """Per-hospital bytes of one measured round: median over hospitals of the sum over the
    round's messages, plus the mean per stage."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    by_node: dict[int, dict[str, int]] = {}
    stages: dict[str, dict[str, int]] = {}
    for rec in lines:
        node = by_node.setdefault(rec["node"], {"sent": 0, "received": 0})
        node["sent"] += rec["sent"]
        node["received"] += rec["received"]
        st = stages.setdefault(rec["stage"], {"sent": 0, "received": 0, "messages": 0})
        st["sent"] += rec["sent"]
        st["received"] += rec["received"]
        st["messages"] += 1
    n = max(len(by_node), 1)
    return {
        "hospitals_seen": len(by_node),
        "sent_per_hospital": _bench.median([v["sent"] for v in by_node.values()]),
        "received_per_hospital": _bench.median([v["received"] for v in by_node.values()]),
        "mean_per_stage_per_hospital": {k: {"sent": v["sent"] / n, "received": v["received"] / n,
                                            "messages": v["messages"] / n} for k, v in stages.items()},
    }


def run_grid(ns: list[int], sizes: dict[str, int], reps: int, warmup: bool, measure_bytes: bool,
             workdir: Path) -> dict:
    """One simulation with max(ns) hospitals; every (n, size, mode) cell interleaved."""
    from flwr.server import ServerApp
    from flwr.simulation import run_simulation

    from simulations.simulate import backend_config

    total = max(ns)
    log, flag = workdir / "bytes.jsonl", workdir / "measure.flag"
    os.environ[BYTES_LOG_ENV], os.environ[BYTES_FLAG_ENV] = str(log), str(flag)
    cells: dict[tuple[int, str], dict] = {
        (n, label): {"n": n, "size": label, "params": p, "plain": [], "secagg": [], "bytes": {}}
        for n in ns for label, p in sizes.items()
    }
    modes = ["plain", "secagg"]
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context) -> None:
        runner = RoundRunner(grid, context, total)
        try:
            for (n, label), cell in cells.items():
                if measure_bytes:  # one untimed round per mode with size logging on (also a warm-up)
                    for mode in modes:
                        log.unlink(missing_ok=True)
                        flag.touch()
                        try:
                            runner.fit_round(n=n, params=cell["params"], secure=mode == "secagg")
                        finally:
                            flag.unlink(missing_ok=True)
                        cell["bytes"][mode] = _read_bytes(log)
                elif warmup:
                    for mode in modes:
                        runner.fit_round(n=n, params=cell["params"], secure=mode == "secagg")
            for rep in range(reps):
                for (n, label), cell in cells.items():
                    for mode in (modes if rep % 2 == 0 else modes[::-1]):
                        secs = runner.fit_round(n=n, params=cell["params"], secure=mode == "secagg")
                        cell[mode].append(secs)
                        print(f"  rep {rep + 1} n={n:3d} {label:>4} {mode:6s} {secs:7.2f} s", flush=True)
        finally:
            runner.close()

    flower_logger = logging.getLogger("flwr")
    previous = flower_logger.level
    flower_logger.setLevel(logging.ERROR)
    try:
        run_simulation(server_app=server_app, client_app=_make_client_app(), num_supernodes=total,
                       backend_config=backend_config(total))
    finally:
        flower_logger.setLevel(previous)
    for cell in cells.values():
        if len(cell["plain"]) != reps or len(cell["secagg"]) != reps:
            raise RuntimeError("the simulation did not finish its rounds (see the log above)")
        cell["ratio_secagg_over_plain"] = _bench.paired_ratio(cell["secagg"], cell["plain"])
        cell["secagg_own_seconds"] = _bench.median([s - p for s, p in zip(cell["secagg"], cell["plain"])])
    return {"cells": list(cells.values())}


def protocol_bytes(params: int, n: int, num_shares: int = 3) -> dict:
    """What the protocol itself must send per hospital (payload only), for comparison:
    plain: the float32 update; SecAgg+: the masked vector as int64 (Flower's masks are int64)
    plus one int64 weight factor, plus 2 public keys and, per neighbour, an encrypted pair of
    Shamir shares."""
    plain = 4 * params
    masked = 8 * (params + 1)
    return {"plain_update": plain, "secagg_masked_vector": masked, "ratio_masked_vector": masked / plain,
            "neighbours": min(num_shares, n) - 1}


def grid_part(args, workdir: Path) -> dict:
    ns = [int(x) for x in args.hospitals.split(",")]
    sizes = {k: SIZES[k] for k in args.sizes.split(",")}
    print(f"grid: {', '.join(map(str, ns))} hospitals x {', '.join(sizes)} parameters, {args.reps} reps", flush=True)
    grid = run_grid(ns, sizes, args.reps, warmup=not args.quick, measure_bytes=not args.no_bytes, workdir=workdir)
    by = {(c["n"], c["size"]): c for c in grid["cells"]}
    rows, exponents = [], {}
    for label in sizes:
        own = [by[(n, label)]["secagg_own_seconds"] for n in ns]
        exponents[label] = {
            "slope_own_cost_vs_n": _bench.loglog_slope(ns, own),
            "slope_secagg_round_vs_n": _bench.loglog_slope(ns, [_bench.median(by[(n, label)]["secagg"]) for n in ns]),
            "slope_plain_round_vs_n": _bench.loglog_slope(ns, [_bench.median(by[(n, label)]["plain"]) for n in ns]),
            "nlogn_reference_slope": _bench.nlogn_slope(ns),
        }
        exponents[label]["no_faster_than_nlogn"] = (
            exponents[label]["slope_own_cost_vs_n"] <= exponents[label]["nlogn_reference_slope"]
        )
        for n in ns:
            c = by[(n, label)]
            b = c.get("bytes", {})
            rows.append([n, label, _bench.median(c["plain"]), _bench.median(c["secagg"]),
                         f"{c['ratio_secagg_over_plain']:.2f}x", c["secagg_own_seconds"],
                         _mb(b.get("plain", {}).get("sent_per_hospital")),
                         _mb(b.get("secagg", {}).get("sent_per_hospital")),
                         _mb(b.get("plain", {}).get("received_per_hospital")),
                         _mb(b.get("secagg", {}).get("received_per_hospital"))])
    print()
    print(_bench.table(rows, ["hospitals", "params", "plain round s", "secagg round s", "secagg/plain",
                              "secagg own s", "MB sent plain", "MB sent secagg", "MB recv plain", "MB recv secagg"]))
    for c in grid["cells"]:
        print(f"RATIO secagg_overhead n={c['n']} {c['size']}: secagg/plain round {c['ratio_secagg_over_plain']:.2f}x",
              flush=True)
    for label, e in exponents.items():
        print(f"RATIO secagg_overhead growth {label}: own cost ~ n^{e['slope_own_cost_vs_n']:.2f} "
              f"(n log n over these n: n^{e['nlogn_reference_slope']:.2f}) -> "
              f"{'met' if e['no_faster_than_nlogn'] else 'MISSED'}", flush=True)
    return {"hospitals": ns, "sizes": sizes, "reps": args.reps, "cells": grid["cells"], "growth": exponents,
            "protocol_bytes": {label: protocol_bytes(p, max(ns)) for label, p in sizes.items()}}


def _default_child(mode: str, rounds: int, out_dir: Path, result_json: Path) -> int:
    """One default simulation (child process of `default_part`); writes its round times."""
    from simulations.simulate import build_config, run

    cfg = build_config({"num-rounds": rounds, "secagg": mode == "on", "out-dir": str(out_dir)})
    result = run(cfg, data_dir=_bench.data_dir())
    durations = [r["duration_s"] for r in result.metrics["rounds"] if r["round"] >= 1]
    result_json.write_text(json.dumps({"secagg": mode, "round_seconds": durations, "total_seconds": result.seconds,
                                       "final_auc": result.metrics["final"]["global"].get("auc")}))
    return 0


def default_part(args, workdir: Path) -> dict:
    """SecAgg+ on vs off on the default simulation, the two federations running AT THE SAME
    TIME (two child processes, each with its own Ray instance), so that both see the same
    machine load round for round; the pair is repeated with the start order swapped.
    Each round's time is paired with the same round of the other federation."""
    import subprocess

    _bench.data_dir()
    pairs = []
    ratios: list[float] = []
    rounds: dict[str, list[float]] = {"on": [], "off": []}
    for pair in range(args.default_pairs):
        order = ["on", "off"] if pair % 2 == 0 else ["off", "on"]
        print(f"default simulation pair {pair + 1}/{args.default_pairs}: secagg on and off side by side, "
              f"{args.default_rounds} rounds", flush=True)
        procs, files = {}, {}
        for mode in order:
            files[mode] = workdir / f"default-{pair}-{mode}.json"
            procs[mode] = subprocess.Popen(
                [sys.executable, __file__, "--default-child", mode, "--default-rounds", str(args.default_rounds),
                 "--out", str(files[mode])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                cwd=str(workdir), env={**os.environ, "PYTHONPATH": str(_bench.REPO)})
            time.sleep(2)
        for mode, proc in procs.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"default simulation (secagg {mode}) failed:\n{err[-3000:]}")
        got = {mode: json.loads(files[mode].read_text()) for mode in procs}
        on, off = got["on"]["round_seconds"][1:], got["off"]["round_seconds"][1:]  # round 1 builds clients, calibrates
        ratios.extend(a / b for a, b in zip(on, off))
        rounds["on"].extend(on)
        rounds["off"].extend(off)
        pairs.append({"start_order": order, "on": got["on"], "off": got["off"]})
        print(f"  on  {got['on']['round_seconds']}\n  off {got['off']['round_seconds']}", flush=True)
    ratio = _bench.median(ratios)
    overhead = ratio - 1
    print(f"RATIO secagg_overhead default simulation: secagg on/off round time {ratio:.2f}x "
          f"(overhead {100 * overhead:+.0f} %, target <= {100 * TARGET_DEFAULT_OVERHEAD:.0f} %: "
          f"{'met' if overhead <= TARGET_DEFAULT_OVERHEAD else 'MISSED'})", flush=True)
    return {"config": "medfed simulate defaults (pneumoniamnist, 4 sites, dirichlet 1.0, sample-dp eps 8 ghost, "
                      "2 local epochs, batch 128, seed 0)",
            "method": "on and off federations run concurrently (same load), pairs repeated with start order swapped; "
                      "ratio = median over rounds 2.. of on/off for the same round",
            "rounds": args.default_rounds, "pairs": pairs, "per_round_ratios": ratios,
            "median_round_seconds": {"on": _bench.median(rounds["on"]), "off": _bench.median(rounds["off"])},
            "ratio_on_over_off": ratio, "overhead": overhead, "target_met": overhead <= TARGET_DEFAULT_OVERHEAD}


def _mb(x) -> float:
    return x / 1e6 if isinstance(x, (int, float)) and not math.isnan(x) else math.nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 4 and 8 hospitals, 0.1M parameters, 1 rep, no default-simulation part")
    ap.add_argument("--part", choices=("grid", "default", "all"), default="all")
    ap.add_argument("--hospitals", default="4,8,16,32")
    ap.add_argument("--sizes", default="0.1M,1M,5M", help=f"comma-separated, from {', '.join(SIZES)}")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per grid cell and mode")
    ap.add_argument("--no-bytes", action="store_true", help="skip the (untimed) byte-measurement rounds")
    ap.add_argument("--default-rounds", type=int, default=4)
    ap.add_argument("--default-pairs", type=int, default=2, help="side-by-side on/off pairs of default simulations")
    ap.add_argument("--default-child", choices=("on", "off"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.default_child:
        with tempfile.TemporaryDirectory(prefix="medfed-secagg-default-") as tmp:
            return _default_child(args.default_child, args.default_rounds, Path(tmp) / "run", args.out)
    if args.quick:
        args.hospitals, args.sizes, args.reps = "4,8", "0.1M", 1
        if args.part == "all":
            args.part = "grid"
    _bench.data_dir()
    info = _bench.machine()
    started = time.monotonic()
    payload: dict = {
        "benchmark": "secagg_overhead",
        "command": "python benchmarks/secagg_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "targets": {"default_round_overhead": f"<= {100 * TARGET_DEFAULT_OVERHEAD:.0f} %",
                    "own_cost_growth": "no faster than n log n in the number of hospitals"},
        "secagg_settings": "medfed defaults: num_shares 3, threshold 2, update bound 4.0, modulus 2^32",
        "machine": info,
    }
    with tempfile.TemporaryDirectory(prefix="medfed-secagg-bench-") as tmp:
        if args.part in ("grid", "all"):
            payload["grid"] = grid_part(args, Path(tmp))
        if args.part in ("default", "all"):
            payload["default_simulation"] = default_part(args, Path(tmp))
    payload["load_average_at_end"] = _bench.loadavg()
    payload["wall_seconds"] = round(time.monotonic() - started, 1)
    name = "secagg_overhead" + ("-quick" if args.quick else "") + ("" if args.part == "all" or args.quick else f"-{args.part}")
    path = _bench.write_result(name, payload, out=args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
