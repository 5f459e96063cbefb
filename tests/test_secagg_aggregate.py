"""Under SecAgg+, the server-side strategy receives only the aggregate.

Three simulated sites return known, distinct updates through medfed's real client mods
(SecAgg+ masking, update encoding) and Flower's SecAggPlusWorkflow; a spy records exactly what
medfed's strategy receives. It must differ from every individual update and equal their
example-weighted mean within the quantisation error.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.simulation import run_simulation

from client.mods import PROTOCOL_MODS
from common.config import PrivacyConfig, SecAggConfig
from server.secure_aggregation import secagg_settings, secagg_workflow
from server.strategies import GuardedStrategy, UpdateGate
from server.workflow import MedfedWorkflow, evaluate_workflow

SHAPES = [(4, 3), (5,)]
GLOBAL = [np.zeros(s, dtype=np.float32) for s in SHAPES]
EXAMPLES = [100, 300, 600]


def site_update(i: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1000 + i)
    return [rng.uniform(-0.9, 0.9, size=s).astype(np.float32) for s in SHAPES]


class FixedClient(NumPyClient):
    def __init__(self, index: int) -> None:
        self.index = index

    def fit(self, parameters, config):
        local = [p + d for p, d in zip(parameters, site_update(self.index))]
        return local, EXAMPLES[self.index], {"site": f"site-{self.index}"}

    def evaluate(self, parameters, config):
        return 0.0, 1, {"site": f"site-{self.index}"}


def client_fn(context: Context) -> Client:
    return FixedClient(int(context.node_config["partition-id"])).to_client()


class NullObserver:
    def __getattr__(self, name):
        return lambda *a, **k: None


class Spy(GuardedStrategy):
    received: list[list[np.ndarray]] = []

    def aggregate_fit(self, server_round, results, failures):
        from flwr.common import parameters_to_ndarrays

        for _, res in results:
            Spy.received.append(parameters_to_ndarrays(res.parameters))
        return super().aggregate_fit(server_round, results, failures)


@pytest.mark.slow
def test_strategy_sees_only_the_weighted_sum() -> None:
    settings = secagg_settings(
        SecAggConfig(num_shares=3, reconstruction_threshold=2, update_bound=1.0),
        PrivacyConfig(),
        num_sites=3,
        largest_site=max(EXAMPLES),
    )
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        strategy = Spy(
            FedAvg(min_fit_clients=3, min_available_clients=3, min_evaluate_clients=3,
                   initial_parameters=ndarrays_to_parameters(GLOBAL)),
            initial_weights=GLOBAL,
            gate=UpdateGate(update_bound=settings.clipping_range, secure=True, max_update_bytes=10**6),
            observer=NullObserver(),
            min_sites=2,
        )
        workflow = MedfedWorkflow(
            fit_workflow=secagg_workflow(settings, timeout=60),
            evaluate_workflow=evaluate_workflow(60),
            recorder=NullObserver(),
            min_sites=3,
            quorum_timeout=60,
        )
        workflow(grid, LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy))

    Spy.received = []
    run_simulation(
        server_app=server_app,
        client_app=ClientApp(client_fn=client_fn, mods=PROTOCOL_MODS),
        num_supernodes=3,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    assert len(Spy.received) == 3, "the strategy should get one (aggregated) result per site"
    updates = [site_update(i) for i in range(3)]
    weights = np.array(EXAMPLES, dtype=float) / sum(EXAMPLES)
    expected = [sum(w * u[k] for w, u in zip(weights, updates)) for k in range(len(SHAPES))]
    tolerance = 3 * settings.quantization_step * settings.max_weight / min(EXAMPLES) + 1e-6
    for got in Spy.received:
        for k in range(len(SHAPES)):
            np.testing.assert_allclose(got[k], expected[k], atol=tolerance)
        for individual in updates:
            assert max(float(np.max(np.abs(g - u))) for g, u in zip(got, individual)) > 0.05, (
                "the strategy received something equal to an individual site's update"
            )
