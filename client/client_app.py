"""The medfed ClientApp: a thin adapter from Flower messages to the site's training code.

`app` reads the run configuration from Flower (`flwr run .`, deployment). `make_client_app`
binds a configuration in advance, for `medfed simulate` (Flower's `run_simulation` takes no
run config).

Flower (deployment) starts a fresh `flwr-clientapp` process for every message, and SecAgg+
sends five per round (setup, share keys, masked vectors, unmask, then evaluate). Only two of them
train or evaluate; the other three are handled by `secaggplus_mod` alone. So torch, Opacus and
the training code are imported inside `client_fn`, not at module level: loading this module costs
~0.5 s instead of ~5 s, on each of those three messages at every site.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from flwr.app import Context
from flwr.client import Client
from flwr.clientapp import ClientApp

from client.mods import client_mods
from common.config import RunConfig
from common.runs import run_name


def _client_fn(run_config: Mapping[str, Any] | None) -> Callable[[Context], Client]:
    def client_fn(context: Context) -> Client:
        from client.flower_client import MedfedClient  # heavy (torch, Opacus): see the module docstring
        from client.site import site_run

        cfg = RunConfig.from_flower(run_config if run_config is not None else context.run_config)
        settings = site_run(cfg, context.node_config, context.run_id)
        return MedfedClient(cfg, settings, run_name=run_name(cfg, context.run_id)).to_client()

    return client_fn


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    bound = dict(run_config) if run_config is not None else None
    return ClientApp(client_fn=_client_fn(bound), mods=client_mods(bound))


app = make_client_app()
