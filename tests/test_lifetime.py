"""The lifetime total composes every run's history with RDP: it matches Opacus for one run and
Google's dp-accounting over many, it is far below the sum of per-run epsilons, and its cached
curves survive a round trip through the ledger's JSON."""

from __future__ import annotations

import logging
import random

import pytest

from client.privacy.lifetime import (
    ORDERS, RdpCurves, composed_epsilon, epsilon_of, projected_total, run_epsilon,
)  # fmt: skip


def _histories(seed: int, scopes: int = 20) -> list[list[tuple[float, float, int]]]:
    """Realistic runs: noise 1.0-1.5, q 0.01-0.06, 40-400 steps, some runs with two segments.
    (At q >= 0.2 with noise near 1 dp-accounting drops the fractional orders it cannot
    converge on, so it reports a looser bound than Opacus: not a fair reference there.)"""
    rng = random.Random(seed)
    out = []
    for _ in range(scopes):
        run = [(round(rng.uniform(1.0, 1.5), 3), round(rng.uniform(0.01, 0.06), 3), rng.randint(40, 400))]
        if rng.random() < 0.3:
            run.append((round(rng.uniform(1.0, 1.5), 3), run[0][1], rng.randint(40, 200)))
        out.append(run)
    return out


def _dp_accounting_epsilon(histories, delta: float) -> float:
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    for history in histories:
        for sigma, q, steps in history:
            accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.get_epsilon(delta)


def test_orders_are_opacus_default_alphas() -> None:
    from opacus.accountants.rdp import RDPAccountant

    assert list(ORDERS) == RDPAccountant.DEFAULT_ALPHAS


@pytest.mark.parametrize("history", [[(1.0, 0.05, 100)], [(1.2, 0.1, 200), (0.9, 0.1, 50)], [(1.5, 0.02, 300)]])
def test_run_epsilon_equals_opacus_rdp_get_epsilon(history) -> None:
    from opacus.accountants.rdp import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = list(history)
    assert run_epsilon(history, 1e-5, RdpCurves()) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_composed_epsilon_matches_dp_accounting_and_is_not_a_sum(seed: int) -> None:
    logging.getLogger().setLevel(logging.ERROR)  # dp-accounting logs per-order convergence notes
    histories, delta = _histories(seed), 1e-5
    ours = composed_epsilon(histories, delta, RdpCurves())
    reference = _dp_accounting_epsilon(histories, delta)
    assert ours == pytest.approx(reference, rel=0.01)
    assert ours <= reference * 1.0001  # never optimistic beyond rounding
    summed = sum(run_epsilon(h, delta) for h in histories)
    assert summed > 2 * ours  # adding epsilons would waste most of the hospital's budget


def test_projected_total_adds_the_round_to_its_own_run_or_a_new_one() -> None:
    histories = {"a": [(1.1, 0.05, 100)], "b": [(1.3, 0.08, 200)]}
    extra = [(1.1, 0.05, 10)]
    whole = composed_epsilon([[(1.1, 0.05, 110)], histories["b"]], 1e-5)
    assert projected_total(histories, "a", extra, 1e-5) == pytest.approx(whole)
    renamed = projected_total(histories, "c", extra, 1e-5)  # a new run name composes with the old ones
    assert renamed == pytest.approx(whole) and renamed > composed_epsilon(histories.values(), 1e-5)


def test_no_steps_is_zero_and_curves_round_trip_through_json() -> None:
    curves = RdpCurves()
    assert composed_epsilon([], 1e-5, curves) == 0.0 and composed_epsilon([[(1.0, 0.1, 0)]], 1e-5, curves) == 0.0
    history = [(1.2, 0.05, 150)]
    before = run_epsilon(history, 1e-5, curves)
    restored = RdpCurves.from_json(curves.to_json())
    assert restored.to_json() == curves.to_json()
    assert run_epsilon(history, 1e-5, restored) == pytest.approx(before, rel=1e-12)
    assert epsilon_of(restored.curve([history]), 1e-5) == pytest.approx(before, rel=1e-12)
    with pytest.raises(ValueError, match="rdp curve"):
        RdpCurves.from_json([[1.0, 0.1, [0.0]]])
