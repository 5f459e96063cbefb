"""The medfed ServerApp: a thin adapter from Flower's run to the server's pieces.

Same app for `medfed simulate`, `flwr run .` and `medfed server run` (deployment). `app` reads
the run configuration from Flower; `make_server_app` binds one in advance (simulation).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from flwr.app import Context
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.serverapp.grid import Grid

from common.config import RunConfig
from common.operating_point import evaluate_config
from common.runs import run_out_dir
from common.synthesis.setup import is_synthesis
from server.outputs import write_final_outputs
from server.records import Listener
from server.run_setup import make_central_evaluator, prepare_run
from server.secure_aggregation import secagg_workflow
from server.strategies import build_strategy
from server.workflow import MedfedWorkflow, evaluate_workflow, plain_fit_workflow


def run_federation(grid: Grid, context: Context, cfg: RunConfig, *, listeners: Sequence[Listener] = ()) -> None:
    setup = prepare_run(cfg, run_out_dir(cfg, context.run_id), listeners=listeners)
    cfg = setup.cfg  # with derived values (e.g. the calibrated client-level DP noise)
    strategy = build_strategy(
        cfg,
        initial_weights=setup.initial_weights,
        num_sites=setup.num_sites,
        observer=setup.recorder,
        update_bound=setup.update_bound,
        evaluate_fn=make_central_evaluator(setup),
        evaluate_config=lambda: evaluate_config(setup.operating_point.current),
    )
    strategy.load_optimizer_state(setup.optimizer_state)
    timeout = cfg.federation.round_timeout
    fit = secagg_workflow(setup.secagg, timeout=timeout) if setup.secagg else plain_fit_workflow(timeout)
    # A synthesis run asks the sites for no evaluation and no validation counts: a GAN has no
    # accuracy or operating point, and every site would only answer "withheld" (one ClientApp
    # process per site and message in a deployment, each loading torch and the site's data).
    synthesis = is_synthesis(cfg)
    workflow = MedfedWorkflow(
        fit_workflow=fit,
        evaluate_workflow=None if synthesis else evaluate_workflow(timeout),
        recorder=setup.recorder,
        min_sites=cfg.federation.min_sites,
        wait_for_sites=cfg.federation.wait_for_sites,
        quorum_timeout=timeout,
        start_round=setup.start_round,
        operating_point=None if synthesis else setup.operating_point,
    )
    legacy = LegacyContext(
        context, config=ServerConfig(num_rounds=cfg.federation.num_rounds, round_timeout=timeout), strategy=strategy
    )
    workflow(grid, legacy)
    write_final_outputs(setup, workflow.final_weights)


def make_server_app(run_config: Mapping[str, Any] | None = None, *, listeners: Sequence[Listener] = ()) -> ServerApp:
    """`listeners` get the run's progress events in this process (the simulation's live display)."""
    bound = dict(run_config) if run_config is not None else None
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = RunConfig.from_flower(bound if bound is not None else context.run_config)
        run_federation(grid, context, cfg, listeners=listeners)

    return server_app


app = make_server_app()
