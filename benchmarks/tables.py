"""Markdown tables for docs/BENCHMARKS.md, printed from benchmarks/results/*.json.

The document's tables are pasted from this output, so every number in them can be traced to a
results file. Run from the repository root:  python benchmarks/tables.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def dp_table(d: dict) -> str:
    rows = []
    for r in d["results"]:
        lp = r["loop_samples_per_s_median"]
        ls, rs = r["loop_slowdown_vs_non_private"], r["round_slowdown_vs_non_private"]
        rows.append([f"{r['model'].upper()} / {r['dataset']}", f"{r['parameters']:,}", r["train_examples"],
                     f"{lp['non-private']:.0f}", f"{lp['hooks']:.0f}", f"{lp['ghost']:.0f}",
                     f"{ls['hooks']:.2f}x", f"**{ls['ghost']:.2f}x**", f"{rs['hooks']:.2f}x", f"{rs['ghost']:.2f}x",
                     _f(r["private_round_fixed_seconds_median"]["ghost"], 3)])
    return _bench.table(rows, ["model / data", "params", "n", "loop samples/s non-private", "loop hooks",
                               "loop ghost", "loop slowdown hooks", "loop slowdown ghost", "round slowdown hooks",
                               "round slowdown ghost", "ghost fixed s/round"])


def secagg_tables(d: dict) -> str:
    out = []
    if "grid" in d:
        g = d["grid"]
        rows = []
        for c in sorted(g["cells"], key=lambda c: (c["params"], c["n"])):
            b = c.get("bytes", {})
            rows.append([c["size"], c["n"], _f(_bench.median(c["plain"])), _f(_bench.median(c["secagg"])),
                         f"**{c['ratio_secagg_over_plain']:.2f}x**", _f(c["secagg_own_seconds"]),
                         _f(b.get("plain", {}).get("sent_per_hospital", math.nan) / 1e6, 2),
                         _f(b.get("secagg", {}).get("sent_per_hospital", math.nan) / 1e6, 2),
                         _f(b.get("secagg", {}).get("received_per_hospital", math.nan) / 1e6, 2)])
        out.append(_bench.table(rows, ["params", "hospitals", "plain round s", "SecAgg+ round s", "SecAgg+/plain",
                                       "SecAgg+ own s", "MB sent/hospital plain", "MB sent/hospital SecAgg+",
                                       "MB received/hospital SecAgg+"]))
        rows = [[label, _f(e["slope_own_cost_vs_n"]), _f(e["slope_secagg_round_vs_n"]), _f(e["slope_plain_round_vs_n"]),
                 _f(e["nlogn_reference_slope"]), "met" if e["no_faster_than_nlogn"] else "MISSED"]
                for label, e in g["growth"].items()]
        out.append(_bench.table(rows, ["params", "SecAgg+ own cost ~ n^k", "SecAgg+ round ~ n^k", "plain round ~ n^k",
                                       "n log n over same n", "no faster than n log n"]))
    if "default_simulation" in d:
        s = d["default_simulation"]
        rows = []
        for i, pair in enumerate(s.get("pairs", [])):
            for mode in ("on", "off"):
                r = pair[mode]
                rows.append([i + 1, mode, ", ".join(f"{x:.1f}" for x in r["round_seconds"]), _f(r["final_auc"], 3)])
        out.append(_bench.table(rows, ["pair", "SecAgg+", "round seconds (1, 2, ...)", "final AUC"]))
        out.append(f"per-round on/off ratios (rounds 2+): {', '.join(f'{x:.2f}' for x in s['per_round_ratios'])}; "
                   f"median {s['ratio_on_over_off']:.3f} (overhead {100 * s['overhead']:+.1f} %); median round on "
                   f"{s['median_round_seconds']['on']:.1f} s, off {s['median_round_seconds']['off']:.1f} s")
    return "\n\n".join(out)


def scaling_table(d: dict) -> str:
    rows = []
    for privacy, s in d["summary"].items():
        per = {int(k): v for k, v in s["per_n"].items()}
        base = per[min(per)]["steady_round_seconds"]
        for n in sorted(per):
            p = per[n]
            rows.append([privacy, n, _f(p["steady_round_seconds"]), f"{p['steady_round_seconds'] / base:.2f}x",
                         _f(p["first_round_seconds"], 1), _f(p["peak_rss_gib"]), _f(p["peak_pss_gib"])])
        rows.append([privacy, "growth", f"n^{s['growth_exponent']:.2f}", "", "", "", ""])
    return _bench.table(rows, ["privacy", "hospitals", "round s (rounds 2+)", "vs smallest", "round 1 s",
                               "peak RSS GiB (sum)", "peak PSS GiB (sum)"])


def accuracy_table(d: dict) -> str:
    rows = []
    for e in d["summary"]:
        def ms(metric: str) -> str:
            return f"{e[metric]['mean']:.3f} ± {e[metric]['std']:.3f}" if metric in e else "-"
        verdict = "; ".join(f"{c['target']}: {'met' if c['met'] else '**missed**'} ({c['by']:+.3f})" for c in e["targets"])
        name = e["cell"] + (f" [{e['recipe']}]" if e.get("recipe") else "")
        rows.append([name, len(e["seeds"]), ms("auc"), ms("accuracy"), ms("balanced_accuracy"),
                     ms("mean_site_accuracy"), verdict or "-"])
    return _bench.table(rows, ["cell", "seeds", "AUC (global)", "accuracy (op. point)", "balanced accuracy (op. point)",
                               "mean per-hospital accuracy", "target"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=_bench.RESULTS)
    args = ap.parse_args(argv)
    for name, render in (("dp_overhead", dp_table), ("secagg_overhead-grid", secagg_tables),
                         ("secagg_overhead-default", secagg_tables), ("secagg_overhead", secagg_tables),
                         ("scaling", scaling_table), ("accuracy", accuracy_table)):
        d = _load(args.results, name)
        if d is None:
            continue
        print(f"## {name}  ({d.get('command', '')}; started {d['machine']['date']}, load "
              f"{d['machine']['load_average_at_start']} -> {d.get('load_average_at_end', d.get('load_average_at_last_save'))})\n")
        print(render(d))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
