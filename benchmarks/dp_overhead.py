"""DP-SGD cost: local-training throughput with and without sample-level DP.

For each model family (CNN on PneumoniaMNIST, GRU on ECG5000, MLP on Fed-Heart-Disease) one
site's training split is trained by medfed's own trainers, exactly as a site does in a round:
  * non-private  `NonPrivateTrainer`                       (plain SGD, shuffled batches)
  * hooks        `PrivateTrainer`, clipping="flat"          (Opacus per-sample gradients)
  * ghost        `PrivateTrainer`, clipping="ghost"         (Opacus ghost clipping, medfed's default)
Same model, data, batch size (128) and local epochs (2). Two times are taken per round:
  * loop:  the training loop alone (`client.training.train_epochs`, timed by wrapping the name
           the trainers call) -- the cost of DP-SGD itself, what ghost clipping is meant to cut;
  * round: the whole `train_round`, which for a private round adds what a site pays every
           round: restoring the accountant from the ledger, the projected-epsilon (RDP) check,
           the write-ahead ledger writes and `make_private` (the noise multiplier is
           calibrated once, before timing).
Throughput = expected samples per round (n x epochs; Poisson sampling draws n on average) /
seconds. The variants are interleaved and compared repetition by repetition (see _bench.py);
the reported slowdown is the median of the per-repetition ratios.

A second section measures the accounting part of a private round's fixed cost with
FIXED_COST_RUNS (20) runs already in the site's ledger (noise 1.0-1.5, q 0.05-0.3, 40-400
steps each), in a fresh ledger object each repetition as a fresh ClientApp process would see it:
  * today:  the projection as private_trainer.py does it: Opacus `RDPAccountant.get_epsilon`
            on the run's history plus this round's steps (it recomputes every RDP curve);
  * medfed: the same run projection from the ledger's cached curves (`lifetime.run_epsilon`)
            plus the lifetime total over all 20 runs (`PrivacyLedger.projected_total`);
  * write:  one reservation write (`PrivacyLedger.update`), which recomposes the lifetime section.
Target: medfed's projection + lifetime composition under FIXED_COST_TARGET_S (50 ms).

Run from the repository root:  python benchmarks/dp_overhead.py [--quick] [--reps N] [--fixed-cost-only]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

import client.privacy.private_trainer as private_trainer_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

from client.privacy.ledger import PrivacyLedger, RoundRecord  # noqa: E402
from client.privacy.lifetime import run_epsilon  # noqa: E402
from client.privacy.private_trainer import NonPrivateTrainer, PrivateTrainer  # noqa: E402
from common.config import DataConfig, PrivacyConfig  # noqa: E402
from common.datasets.contract import Split, normalise_with_site_stats  # noqa: E402
from common.datasets.federated import load_federated  # noqa: E402
from common.models import build_model, count_parameters  # noqa: E402

CASES = (  # (model, dataset)
    ("cnn", "pneumoniamnist"),
    ("gru", "ecg5000"),
    ("mlp", "heart-disease"),
)
VARIANTS = ("non-private", "hooks", "ghost")
TARGET_GHOST_SLOWDOWN = 1.5
FIXED_COST_RUNS = 20
FIXED_COST_TARGET_S = 0.05

_LOOP_SECONDS: list[float] = []  # filled by the wrapper below, one entry per train_epochs call
_real_train_epochs = private_trainer_module.train_epochs


def _timed_train_epochs(*args, **kwargs):
    started = time.perf_counter()
    try:
        return _real_train_epochs(*args, **kwargs)
    finally:
        _LOOP_SECONDS.append(time.perf_counter() - started)


private_trainer_module.train_epochs = _timed_train_epochs  # both trainers call it by this name


def site_training_split(dataset: str, data_dir: str, limit: int | None) -> tuple[Split, tuple[int, ...], int]:
    """All of the dataset's training rows as one site (80 % of the pool, IID), normalised
    with that site's own statistics, as a simulated site would hold them."""
    fed = load_federated(DataConfig(dataset=dataset, partition="iid", num_sites=1, seed=0), data_dir)
    site = normalise_with_site_stats(fed.site(0), fed.modality)
    train = site.train
    if limit is not None and len(train) > limit:
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(train), generator=g)[:limit]
        train = Split(train.x[idx], train.y[idx])
    return train, fed.input_shape, fed.num_classes


def make_round(variant: str, model_name: str, train: Split, shape, k: int, *, epochs: int, batch: int,
               rounds: int, workdir: Path):
    """A zero-argument callable that runs one local round and returns its seconds."""
    torch.manual_seed(0)
    model = build_model(model_name, shape, k)
    device = torch.device("cpu")
    if variant == "non-private":
        trainer = NonPrivateTrainer(local_epochs=epochs, batch_size=batch, num_examples=len(train))
    else:
        trainer = PrivateTrainer(
            privacy=PrivacyConfig(mode="sample-dp", epsilon=8.0, delta=1e-4, clipping="flat" if variant == "hooks" else "ghost"),
            num_rounds=rounds,
            local_epochs=epochs,
            batch_size=batch,
            num_examples=len(train),
            ledger=PrivacyLedger(workdir / f"{model_name}-{variant}.json"),
            run_name=f"bench-{model_name}-{variant}",
        )

    def one_round() -> tuple[float, float]:
        """(round seconds, training-loop seconds)"""
        _LOOP_SECONDS.clear()
        started = time.perf_counter()
        trainer.train_round(model, train, device=device)
        total = time.perf_counter() - started
        return total, sum(_LOOP_SECONDS)

    return one_round, count_parameters(model)


def fixed_cost(workdir: Path, reps: int, delta: float = 1e-4) -> dict:
    """The accounting part of a private round's fixed cost, today's vs medfed's (module docstring)."""
    from opacus.accountants import create_accountant

    rng = random.Random(0)
    ledger = PrivacyLedger(workdir / "fixed-cost-ledger.json")
    ledger.set_lifetime_budget(total_epsilon=1e6, delta=delta)
    for i in range(FIXED_COST_RUNS):
        history = [(round(rng.uniform(1.0, 1.5), 3), round(rng.uniform(0.05, 0.3), 3), rng.randint(40, 400))]
        ledger.open_scope(f"run-{i}", accountant="rdp", delta=delta, epsilon_budget=1e6)
        ledger.update(f"run-{i}", lambda e, h=history: (setattr(e, "history", h),
                                                       e.rounds.append(RoundRecord(epsilon=0.0, steps=h[0][2]))))
    scope = f"run-{FIXED_COST_RUNS - 1}"
    sigma, q, _ = ledger.entry(scope).history[-1]
    extra = [(sigma, q, 20)]  # this round's steps, at the run's own (noise, rate)
    today, medfed, write = [], [], []
    for _ in range(reps + 1):  # the first repetition is a warm-up
        fresh = PrivacyLedger(ledger.path)
        started = time.perf_counter()
        sim = create_accountant("rdp")
        sim.history = private_trainer_module.extend_history(fresh.entry(scope).history, sigma, q, 20)
        with private_trainer_module._opacus_notices_off():
            sim.get_epsilon(delta=delta)
        today.append(time.perf_counter() - started)
        fresh = PrivacyLedger(ledger.path)
        started = time.perf_counter()
        run_epsilon(fresh.entry(scope).history + extra, delta, fresh.curves())
        fresh.projected_total(scope, extra, delta)
        medfed.append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh.update(scope, lambda e: e.rounds.append(RoundRecord(epsilon=0.0, steps=20)))
        write.append(time.perf_counter() - started)
    today, medfed, write = today[1:], medfed[1:], write[1:]
    out = {
        "runs_in_ledger": FIXED_COST_RUNS,
        "today_opacus_projection_seconds": today,
        "medfed_projection_and_lifetime_seconds": medfed,
        "ledger_write_seconds": write,
        "today_median_s": _bench.median(today),
        "medfed_median_s": _bench.median(medfed),
        "write_median_s": _bench.median(write),
        "speedup": _bench.paired_ratio(today, medfed),
    }
    out["target_met"] = out["medfed_median_s"] < FIXED_COST_TARGET_S
    print(f"RATIO dp_overhead fixed-cost: Opacus get_epsilon projection {out['today_median_s'] * 1e3:.1f} ms, "
          f"medfed projection + lifetime over {FIXED_COST_RUNS} runs {out['medfed_median_s'] * 1e3:.2f} ms "
          f"({out['speedup']:.0f}x faster; target < {FIXED_COST_TARGET_S * 1e3:.0f} ms "
          f"{'met' if out['target_met'] else 'MISSED'}); ledger write {out['write_median_s'] * 1e3:.1f} ms "
          f"(median of {reps})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: small data, 1 repetition (< 60 s)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (after 1 warm-up)")
    ap.add_argument("--epochs", type=int, default=2, help="local epochs per round (medfed default 2)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 = what a simulated hospital gets: one Ray CPU each)")
    ap.add_argument("--only", default="", help="comma-separated models to run (cnn,gru,mlp)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/dp_overhead.json)")
    ap.add_argument("--fixed-cost-only", action="store_true",
                    help="only the accounting fixed cost with 20 runs in the ledger (< 30 s)")
    args = ap.parse_args(argv)

    data_dir = _bench.data_dir()
    torch.set_num_threads(args.threads)
    reps = 1 if args.quick else args.reps
    epochs = 1 if args.quick else args.epochs
    limit = 256 if args.quick else None
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    info = _bench.machine()
    started = time.monotonic()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="medfed-dp-bench-") as tmp:
        fixed = fixed_cost(Path(tmp), reps=5 if args.quick or args.fixed_cost_only else 20)
        for model_name, dataset in CASES:
            if args.fixed_cost_only or (only and model_name not in only):
                continue
            train, shape, k = site_training_split(dataset, data_dir, limit)
            rounds = reps + 2
            calls, params = {}, 0
            for v in VARIANTS:
                calls[v], params = make_round(v, model_name, train, shape, k, epochs=epochs, batch=args.batch_size,
                                              rounds=rounds, workdir=Path(tmp))
            timed = _bench.interleaved(calls, reps, warmup=1)
            rounds_s = {v: [t[0] for t in timed[v]] for v in VARIANTS}
            loop_s = {v: [t[1] for t in timed[v]] for v in VARIANTS}
            samples = len(train) * epochs
            entry = {
                "model": model_name,
                "dataset": dataset,
                "parameters": params,
                "train_examples": len(train),
                "samples_per_round": samples,
                "round_seconds": rounds_s,
                "loop_seconds": loop_s,
                "loop_samples_per_s_median": {v: samples / _bench.median(loop_s[v]) for v in VARIANTS},
                "round_samples_per_s_median": {v: samples / _bench.median(rounds_s[v]) for v in VARIANTS},
                "loop_slowdown_vs_non_private": {
                    v: _bench.paired_ratio(loop_s[v], loop_s["non-private"]) for v in ("hooks", "ghost")
                },
                "round_slowdown_vs_non_private": {
                    v: _bench.paired_ratio(rounds_s[v], rounds_s["non-private"]) for v in ("hooks", "ghost")
                },
                "private_round_fixed_seconds_median": {
                    v: _bench.median([r - lp for r, lp in zip(rounds_s[v], loop_s[v])]) for v in VARIANTS
                },
            }
            loop, rnd = entry["loop_slowdown_vs_non_private"], entry["round_slowdown_vs_non_private"]
            entry["ghost_target_met_loop"] = loop["ghost"] <= TARGET_GHOST_SLOWDOWN
            entry["ghost_target_met_round"] = rnd["ghost"] <= TARGET_GHOST_SLOWDOWN
            results.append(entry)
            sps = entry["loop_samples_per_s_median"]
            fixed = entry["private_round_fixed_seconds_median"]
            rows.append([model_name, dataset, params, len(train), sps["non-private"], sps["hooks"], sps["ghost"],
                         f"{loop['hooks']:.2f}x", f"{loop['ghost']:.2f}x", f"{rnd['ghost']:.2f}x",
                         f"{fixed['ghost']:.3f}", "met" if entry["ghost_target_met_loop"] else "MISSED"])
            print(f"RATIO dp_overhead {model_name}: training loop hooks/non-private {loop['hooks']:.2f}x, "
                  f"ghost/non-private {loop['ghost']:.2f}x; whole round ghost/non-private {rnd['ghost']:.2f}x "
                  f"(median of {reps} paired reps)", flush=True)

    if rows:
        print()
        print(_bench.table(rows, ["model", "dataset", "params", "n", "loop samples/s non-private",
                                  "loop samples/s hooks", "loop samples/s ghost", "loop hooks slowdown",
                                  "loop ghost slowdown", "round ghost slowdown", "ghost fixed s/round",
                                  "ghost loop <= 1.5x"]))
    payload = {
        "benchmark": "dp_overhead",
        "command": "python benchmarks/dp_overhead.py" + (" --quick" if args.quick else "") + (f" --reps {args.reps}" if args.reps != 3 else "") + (" --fixed-cost-only" if args.fixed_cost_only else ""),
        "quick": args.quick,
        "settings": {"epochs": epochs, "batch_size": args.batch_size, "threads": args.threads, "reps": reps,
                     "epsilon": 8.0, "delta": 1e-4, "max_grad_norm": 1.0, "device": "cpu"},
        "target": f"ghost clipping within {TARGET_GHOST_SLOWDOWN}x of non-private on CPU",
        "machine": info,
        "load_average_at_end": _bench.loadavg(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "results": results,
        "fixed_cost": fixed,
    }
    name = "dp_overhead" + ("-fixed-cost" if args.fixed_cost_only else "") + ("-quick" if args.quick else "")
    path = _bench.write_result(name, payload, out=args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
