"""server/workflow.py: how long a round waits for sites, and the quorum it starts with."""

from __future__ import annotations

import pytest

from common.config import RunConfig
from common.errors import ConfigError


class _Sites:
    """A client manager with `available` sites connected, none arriving."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.waited_for: list[tuple[int, int]] = []

    def wait_for(self, num_clients: int, timeout: int) -> bool:
        self.waited_for.append((num_clients, timeout))
        return self.available >= num_clients

    def num_available(self) -> int:
        return self.available


@pytest.mark.parametrize(
    ("available", "started", "note"),
    [(3, True, False), (2, True, True), (1, False, False)],
)
def test_wait_for_sites_waits_for_more_but_starts_with_the_quorum(available: int, started: bool, note: bool) -> None:
    from types import SimpleNamespace

    from server.workflow import MedfedWorkflow

    events: list[tuple[int, str]] = []
    recorder = SimpleNamespace(event=lambda rnd, text: events.append((rnd, text)))
    workflow = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=recorder, min_sites=2,
                              wait_for_sites=3, quorum_timeout=7.0)
    sites = _Sites(available)
    assert workflow._wait_for_sites(SimpleNamespace(client_manager=sites), 4) is started
    assert sites.waited_for == [(3, 7)], "one bounded wait, for all the sites asked for"
    assert bool(events) is note
    if note:
        assert events == [(4, "only 2 of the 3 sites waited for are connected after 7 s; starting the round with them")]


def test_wait_for_sites_defaults_to_min_sites() -> None:
    from types import SimpleNamespace

    from server.workflow import MedfedWorkflow

    workflow = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=None, min_sites=2,
                              quorum_timeout=5.0)
    sites = _Sites(1)
    assert workflow._wait_for_sites(SimpleNamespace(client_manager=sites), 1) is False
    assert sites.waited_for == [(2, 5)]
    fed = RunConfig.from_flower({"wait-for-sites": 3, "min-sites": 2}).federation
    configured = MedfedWorkflow(fit_workflow=None, evaluate_workflow=None, recorder=None, min_sites=fed.min_sites,
                                wait_for_sites=fed.wait_for_sites, quorum_timeout=5.0)
    assert configured.wait_for_sites == 3
    with pytest.raises(ConfigError, match="wait-for-sites"):
        RunConfig.from_flower({"wait-for-sites": -1})
