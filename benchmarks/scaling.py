"""Scaling: round time and peak memory versus the number of simulated hospitals (tabular MLP).

Each run is a real `medfed simulate` federation (`simulations.simulate.run`: Flower + Ray,
medfed's client and server apps, SecAgg+ on as by default) with 10, 50, 100 and 200 hospitals.

Site data -- a SCALING benchmark, not an accuracy one: Fed-Heart-Disease has only 740 rows
(486 training rows over its 4 hospitals), too few for 200 hospitals. So the script writes a
hospital-format table (CSV, `data-format=table`) whose training rows are drawn WITH
REPLACEMENT from the real heart-disease training rows (`--rows-per-site` per hospital, 40 by
default: 32 to train on, 8 held out as the site's test split by medfed's IID partition), and
whose test rows are the real heart-disease test rows (the central evaluation set). Every
hospital therefore holds duplicated real patients; accuracies from these runs mean nothing.

Round time = median `duration_s` (metrics.json) of rounds 2.. (round 1 also creates every
client, loads data and, under sample-level DP, calibrates each site's noise). Runs are ordered
up then down (10, 50, 100, 200, 200, 100, 50, 10 for 2 repetitions) so a drift in machine load
does not masquerade as growth; the growth exponent is the log-log slope of round time vs n.
Peak memory: the process tree (driver + Ray's GCS/raylet/agents + Ray workers) sampled every
1 s from /proc: summed RSS (counts shared pages once per process, an over-estimate) and summed PSS
(shared pages split between processes, when /proc/<pid>/smaps_rollup is readable).

Run from the repository root:  python benchmarks/scaling.py [--quick] [--privacy none,sample-dp]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402


def write_resampled_table(path: Path, num_sites: int, rows_per_site: int, data_dir: str, seed: int = 0) -> dict:
    """CSV: num_sites * rows_per_site training rows resampled from real heart-disease training
    rows, plus the real test rows (split column), label column `label`."""
    from common.datasets.builtin import heart_disease

    heart = heart_disease.load(data_dir)
    train_x = np.concatenate([s.train.x.numpy() for s in heart.sites.values()])
    train_y = np.concatenate([s.train.y.numpy() for s in heart.sites.values()])
    test_x = np.concatenate([s.test.x.numpy() for s in heart.sites.values()])
    test_y = np.concatenate([s.test.y.numpy() for s in heart.sites.values()])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(train_y), size=num_sites * rows_per_site)
    x = np.concatenate([train_x[pick], test_x])
    df = pd.DataFrame(x, columns=list(heart_disease.FEATURES))
    df["label"] = np.concatenate([train_y[pick], test_y]).astype(int)
    df["split"] = ["train"] * len(pick) + ["test"] * len(test_y)
    df.to_csv(path, index=False)
    return {"source_train_rows": int(len(train_y)), "resampled_train_rows": int(len(pick)),
            "test_rows": int(len(test_y))}


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemory:
    """Peak summed RSS and PSS of this process and all its descendants, sampled every
    `interval` s from /proc in a thread; `sampler_cpu_seconds` is what the sampling itself cost
    (kept small: it competes with the federation for the 2 cores)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.sampler_cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.thread_time()
            pids = _bench._tree_pids(os.getpid())
            self.peak_rss = max(self.peak_rss, sum(_bench._proc_rss(p) for p in pids))
            self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
            self.peak_procs = max(self.peak_procs, len(pids))
            self.sampler_cpu_seconds += time.thread_time() - started
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_run(n: int, privacy: str, rounds: int, rows_per_site: int, secagg: bool, workdir: Path, data_dir: str,
            tag: str) -> dict:
    from simulations.simulate import build_config, run

    table = workdir / f"heart-resampled-{n}x{rows_per_site}.csv"
    if not table.exists():
        write_resampled_table(table, n, rows_per_site, data_dir)
    cfg = build_config({
        "dataset": "",
        "data-path": str(table),
        "data-format": "table",
        "partition": "iid",
        "num-sites": n,
        "model": "mlp",
        "privacy-mode": privacy,
        "secagg": secagg,
        "num-rounds": rounds,
        "central-eval": True,
        "out-dir": str(workdir / f"run-{tag}"),
    })
    with TreeMemory() as mem:
        result = run(cfg, data_dir=data_dir)
    durations = [r["duration_s"] for r in result.metrics["rounds"] if r["round"] >= 1]
    steady = durations[1:] or durations
    return {"n": n, "privacy": privacy, "round_seconds": durations, "steady_round_seconds": _bench.median(steady),
            "first_round_seconds": durations[0], "total_seconds": result.seconds,
            "peak_rss_bytes": mem.peak_rss, "peak_pss_bytes": mem.peak_pss, "peak_processes": mem.peak_procs,
            "memory_sampler_cpu_seconds": round(mem.sampler_cpu_seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke mode: one run, 4 hospitals, 2 rounds, privacy none (no growth exponent)")
    ap.add_argument("--hospitals", default="10,50,100,200")
    ap.add_argument("--privacy", default="none,sample-dp", help="comma-separated privacy modes (none, sample-dp)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2, help="repetitions (runs ordered up, then down, ...)")
    ap.add_argument("--rows-per-site", type=int, default=40)
    ap.add_argument("--no-secagg", action="store_true", help="turn SecAgg+ off (it is on by default, as in medfed)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.hospitals, args.rounds, args.reps = "4", 2, 1
        args.privacy = args.privacy.split(",")[0]
    ns = [int(x) for x in args.hospitals.split(",")]
    modes = [m.strip() for m in args.privacy.split(",") if m.strip()]
    data_dir = _bench.data_dir()
    info = _bench.machine()
    started = time.monotonic()
    runs: list[dict] = []
    order = [ns if rep % 2 == 0 else ns[::-1] for rep in range(args.reps)]
    with tempfile.TemporaryDirectory(prefix="medfed-scaling-bench-") as tmp:
        for privacy in modes:
            for rep, seq in enumerate(order):
                for n in seq:
                    print(f"scaling: {n} hospitals, privacy {privacy}, rep {rep + 1}", flush=True)
                    r = one_run(n, privacy, args.rounds, args.rows_per_site, not args.no_secagg, Path(tmp), data_dir,
                                tag=f"{privacy}-{n}-{rep}")
                    print(f"  rounds {r['round_seconds']} s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB, "
                          f"PSS {r['peak_pss_bytes'] / 2**30:.2f} GiB, {r['peak_processes']} processes", flush=True)
                    runs.append(r)
        sample_table = Path(tmp) / "sample.csv"
        provenance = write_resampled_table(sample_table, max(ns), args.rows_per_site, data_dir)

    summary, rows = {}, []
    for privacy in modes:
        per_n = {}
        for n in ns:
            mine = [r for r in runs if r["privacy"] == privacy and r["n"] == n]
            per_n[n] = {
                "steady_round_seconds": _bench.median([r["steady_round_seconds"] for r in mine]),
                "first_round_seconds": _bench.median([r["first_round_seconds"] for r in mine]),
                "peak_rss_gib": max(r["peak_rss_bytes"] for r in mine) / 2**30,
                "peak_pss_gib": max(r["peak_pss_bytes"] for r in mine) / 2**30,
            }
        base = per_n[ns[0]]["steady_round_seconds"]
        slope = _bench.loglog_slope(ns, [per_n[n]["steady_round_seconds"] for n in ns])
        summary[privacy] = {"per_n": per_n, "growth_exponent": slope}
        for n in ns:
            p = per_n[n]
            rows.append([privacy, n, p["steady_round_seconds"], f"{p['steady_round_seconds'] / base:.2f}x",
                         p["first_round_seconds"], p["peak_rss_gib"], p["peak_pss_gib"]])
        if len(ns) > 1:
            print(f"RATIO scaling {privacy}: round time {ns[-1]}/{ns[0]} hospitals "
                  f"{per_n[ns[-1]]['steady_round_seconds'] / base:.2f}x, growth exponent n^{slope:.2f}", flush=True)
        else:
            first = per_n[ns[0]]["first_round_seconds"]
            print(f"RATIO scaling {privacy}: {ns[0]} hospitals, round 1 / later rounds "
                  f"{first / base:.2f}x (one size only: no growth exponent)", flush=True)
    print()
    print(_bench.table(rows, ["privacy", "hospitals", "round s (median, rounds 2+)", f"vs {ns[0]} hospitals",
                              "round 1 s", "peak RSS GiB", "peak PSS GiB"]))
    payload = {
        "benchmark": "scaling",
        "command": "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": {"hospitals": ns, "privacy": modes, "rounds": args.rounds, "reps": args.reps,
                     "rows_per_site": args.rows_per_site, "secagg": not args.no_secagg, "model": "mlp",
                     "local_epochs": 2, "batch_size": 128},
        "data": {"note": "training rows resampled with replacement from the real Fed-Heart-Disease training rows; "
                         "test rows = the real heart-disease test rows. A scaling benchmark, not an accuracy one.",
                 **provenance, "at_hospitals": max(ns)},
        "machine": info,
        "load_average_at_end": _bench.loadavg(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    path = _bench.write_result("scaling" + ("-quick" if args.quick else ""), payload, out=args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
