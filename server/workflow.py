"""The round loop: Flower's legacy workflows, bounded in time, resumable, and recorded.

Why not `DefaultWorkflow` as is: it always starts at round 1, its plain fit/evaluate steps wait
for replies without a time limit, and it has no notion of a quorum. This loop keeps Flower's
pieces (client-manager thread, `SecAggPlusWorkflow` for fit, the legacy strategy API) and adds:
  * resume from the last completed round (weights, server-optimiser state, records);
  * a quorum check before each round, bounded by the round timeout — a round that cannot reach
    it is recorded as "quorum not reached" and the next round proceeds;
  * per-round timeouts on every exchange with the sites;
  * the round's operating point (threshold, temperature), chosen on validation data after
    aggregation and before any test evaluation (server/operating.py);
  * a checkpoint and a metrics write after every round.
"""

from __future__ import annotations

import timeit
from typing import Callable, cast

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.common import Code, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp.grid import Grid

from server.operating import OperatingPointChooser
from server.records import RunRecorder
from server.strategies import GuardedStrategy

Workflow = Callable[[Grid, Context], None]


def _current_round(context: LegacyContext) -> int:
    return cast(int, context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])


def _current_parameters(context: LegacyContext):
    return compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)


def _exchange(grid: Grid, rnd: int, instructions: list, *, train: bool, timeout: float) -> tuple[list, list]:
    """Send one legacy instruction per site, collect replies for at most `timeout` seconds, and
    sort them into (results, failures) the way Flower's default workflows do; sites that did not
    reply in time count as failures."""
    to_content = compat.fitins_to_recorddict if train else compat.evaluateins_to_recorddict
    proxies = {proxy.node_id: proxy for proxy, _ in instructions}
    out = [
        Message(
            content=to_content(ins, True),
            dst_node_id=proxy.node_id,
            message_type=MessageType.TRAIN if train else MessageType.EVALUATE,
            group_id=str(rnd),
        )
        for proxy, ins in instructions
    ]
    replies = list(grid.send_and_receive(out, timeout=timeout))
    results: list = []
    failures: list = []
    for msg in replies:
        if msg.has_content():
            res = compat.recorddict_to_fitres(msg.content, False) if train else compat.recorddict_to_evaluateres(msg.content)
            (results if res.status.code == Code.OK else failures).append((proxies[msg.metadata.src_node_id], res))
        else:
            failures.append(Exception(msg.error.reason if msg.has_error() else "no reply"))
    failures.extend(Exception(f"no reply within {timeout:.0f} s") for _ in range(len(instructions) - len(replies)))
    return results, failures


def _exchange_step(*, train: bool, timeout: float) -> Workflow:
    """One of Flower's default round steps (fit without secure aggregation, or federated
    evaluation), bounded by `timeout`: configure, exchange with the sites, aggregate."""

    def run(grid: Grid, context: Context) -> None:
        ctx = cast(LegacyContext, context)
        rnd = _current_round(ctx)
        configure = ctx.strategy.configure_fit if train else ctx.strategy.configure_evaluate
        instructions = configure(rnd, _current_parameters(ctx), ctx.client_manager)
        if not instructions:
            return
        results, failures = _exchange(grid, rnd, instructions, train=train, timeout=timeout)
        if not train:
            ctx.strategy.aggregate_evaluate(rnd, results, failures)
            return
        params, metrics = ctx.strategy.aggregate_fit(rnd, results, failures)
        if params is not None:
            ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(params, True)
            ctx.history.add_metrics_distributed_fit(server_round=rnd, metrics=metrics)

    return run


def plain_fit_workflow(timeout: float) -> Workflow:
    """Flower's default fit step (no secure aggregation), with a reply timeout."""
    return _exchange_step(train=True, timeout=timeout)


def evaluate_workflow(timeout: float) -> Workflow:
    """Flower's default federated-evaluation step, with a reply timeout."""
    return _exchange_step(train=False, timeout=timeout)


class MedfedWorkflow:
    """Round loop; see the module docstring."""

    def __init__(
        self,
        *,
        fit_workflow: Workflow,
        evaluate_workflow: Workflow | None,  # None: no federated evaluation (a synthesis run)
        recorder: RunRecorder,
        min_sites: int,
        quorum_timeout: float,
        start_round: int = 1,
        wait_for_sites: int = 0,
        operating_point: OperatingPointChooser | None = None,
    ) -> None:
        self.fit_workflow = fit_workflow
        self.evaluate_workflow = evaluate_workflow
        self.recorder = recorder
        self.min_sites = min_sites
        self.wait_for_sites = max(min_sites, wait_for_sites)
        self.quorum_timeout = quorum_timeout
        self.start_round = start_round
        self.final_weights: list | None = None
        self.operating_point = operating_point

    def _choose_operating_point(self, grid: Grid, ctx: LegacyContext, rnd: int) -> None:
        if self.operating_point is not None:
            weights = parameters_to_ndarrays(_current_parameters(ctx))
            self.operating_point.step(grid, ctx, _exchange, rnd, weights, self.quorum_timeout)

    def _wait_for_sites(self, ctx: LegacyContext, rnd: int) -> bool:
        """Wait (bounded) for `wait_for_sites` connected hospitals; True if at least `min_sites` are."""
        timeout = int(max(1, self.quorum_timeout))
        if ctx.client_manager.wait_for(self.wait_for_sites, timeout=timeout):
            return True
        if self.wait_for_sites == self.min_sites:
            return False
        available = ctx.client_manager.num_available()
        if available >= self.min_sites:
            self.recorder.event(
                rnd,
                f"only {available} of the {self.wait_for_sites} sites waited for are connected after {timeout} s; "
                "starting the round with them",
            )
            return True
        return False

    def __call__(self, grid: Grid, context: Context) -> None:
        ctx = cast(LegacyContext, context)
        strategy = cast(GuardedStrategy, ctx.strategy)
        thread, stop, registered = start_update_client_manager_thread(grid, ctx.client_manager)
        try:
            registered.wait()
            params = strategy.initialize_parameters(ctx.client_manager)
            assert params is not None
            ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(params, True)
            cfg = ConfigRecord()
            cfg[Key.START_TIME] = timeit.default_timer()
            ctx.state.config_records[MAIN_CONFIGS_RECORD] = cfg

            if self.start_round == 1:
                self.recorder.start_round(0)
                self._choose_operating_point(grid, ctx, 0)
                strategy.evaluate(0, params)  # baseline: the untrained global model
                self.recorder.end_round(0, weights=None, optimizer_state=None)

            for rnd in range(self.start_round, ctx.config.num_rounds + 1):
                cfg[Key.CURRENT_ROUND] = rnd
                self.recorder.start_round(rnd)
                if not self._wait_for_sites(ctx, rnd):
                    self.recorder.quorum_not_reached(
                        rnd, available=ctx.client_manager.num_available(), needed=self.min_sites
                    )
                else:
                    self.fit_workflow(grid, ctx)
                    self._choose_operating_point(grid, ctx, rnd)
                    current = _current_parameters(ctx)
                    strategy.evaluate(rnd, current)
                    if self.evaluate_workflow is not None:
                        self.evaluate_workflow(grid, ctx)
                self.recorder.end_round(
                    rnd,
                    weights=parameters_to_ndarrays(_current_parameters(ctx)),
                    optimizer_state=strategy.optimizer_state(),
                )
            self.final_weights = parameters_to_ndarrays(_current_parameters(ctx))
        finally:
            stop.set()
            thread.join()
