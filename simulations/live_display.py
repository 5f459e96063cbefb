"""Live progress for long runs, and the closing summary table (rich)."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common.config import RunConfig
from common.privacy import recorded_mode

console = Console(stderr=True)


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


class LiveDisplay:
    """A recorder listener: round bar + current metrics + epsilon spent per site."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.progress = Progress(
            TextColumn("[bold]round"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        )
        self.task = self.progress.add_task("starting Ray and the virtual hospitals...", total=cfg.federation.num_rounds)
        self.last: dict = {}
        self.epsilon: dict[str, float] = {}
        self.events: list[str] = []
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
        self._lock = threading.Lock()

    def __enter__(self) -> "LiveDisplay":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)

    def __call__(self, kind: str, payload: dict) -> None:
        with self._lock:
            rnd = payload.get("round")
            if kind == "round_start" and rnd:
                self.progress.update(self.task, description=f"round {rnd}: hospitals training...")
            elif kind == "fit_done":
                self.progress.update(
                    self.task,
                    description=f"round {rnd}: {payload['sites']} hospitals done, {payload['failures']} failed; evaluating...",
                )
            elif kind == "round_end":
                record = payload["record"]
                self.last = record
                for site, entry in payload["privacy"]["sites"].items():
                    eps = entry.get("epsilon") or {}
                    if eps:
                        self.epsilon[site] = eps[max(eps, key=int)]
                if rnd:
                    g = record.get("global", {})
                    self.progress.update(
                        self.task,
                        completed=rnd,
                        description=f"AUC {_f(g.get('auc'))}  acc {_f(g.get('accuracy'))}",
                    )
            elif kind == "event":
                self.events.append(f"round {rnd}: {payload['text']}")
            self._live.update(self._render())

    def _render(self) -> Group:
        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("hospital", "test AUC", "test acc", "trained on", "epsilon spent"):
            table.add_column(col)
        for site, m in sorted(self.last.get("sites", {}).items()):
            table.add_row(site, _f(m.get("auc")), _f(m.get("accuracy")), str(m.get("num_train_examples", "-")), _f(self.epsilon.get(site), 2))
        parts: list[Any] = [self.progress, table]
        parts.extend(f"[yellow]{e}" for e in self.events[-3:])
        return Group(*parts)


def print_summary(result: Any) -> None:
    """The closing table: global and per-site metrics, privacy spent, files written."""
    out = Console()
    final = result.metrics["final"]
    g = final.get("global", {})
    cfg = result.metrics["config"]
    out.print(
        f"\n[bold]Finished {final.get('round')} rounds in {result.seconds:.0f} s[/bold] — "
        f"global test AUC [bold]{_f(g.get('auc'))}[/bold], accuracy {_f(g.get('accuracy'))}, "
        f"balanced accuracy {_f(g.get('balanced_accuracy'))}"
    )
    point = final.get("operating_point") or {}
    if point.get("threshold") is not None:
        out.print(
            f"operating point: threshold {point['threshold']:.3f} ({point.get('rule')}, chosen on {point.get('source')}), "
            f"sensitivity {_f(g.get('sensitivity'))}, specificity {_f(g.get('specificity'))}, "
            f"temperature {point.get('temperature', 1.0):.2f}"
        )
    name = result.privacy.get("privacy_mode")
    mode = recorded_mode(name)
    secure = bool(result.privacy.get("secure_aggregation", {}).get("protocol"))
    out.print(
        f"privacy: {name}"
        + (f" (budget epsilon {cfg['privacy']['epsilon']} per hospital)" if mode is not None and mode.sample_level else "")
        + f"; secure aggregation: {'SecAgg+' if secure else 'OFF'}"
    )
    table = Table(title="Per hospital, final round")
    for col in ("hospital", "test n", "AUC", "accuracy", "sensitivity", "specificity", "epsilon", "status"):
        table.add_column(col)
    for site, m in sorted(final.get("sites", {}).items()):
        p = result.privacy.get("sites", {}).get(site, {})
        eps = p.get("epsilon") or {}
        table.add_row(
            site,
            _f(m.get("num_test_examples")),
            _f(m.get("auc")),
            _f(m.get("accuracy")),
            _f(m.get("sensitivity")),
            _f(m.get("specificity")),
            _f(eps[max(eps, key=int)], 2) if eps else "-",
            str(p.get("status", "ok")),
        )
    out.print(table)
    out.print(f"report: {result.out_dir / 'report.html'}\noutputs: {result.out_dir}")
