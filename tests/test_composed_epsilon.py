"""`composed_epsilon` (client/privacy/lifetime.py): every run's accountant history composed with RDP
agrees with Google's dp-accounting computed independently, and composing beats adding epsilons."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant

from client.privacy.lifetime import composed_epsilon

HISTORIES = [
    [[(1.1, 0.05, 40)]],
    [[(1.1, 0.05, 40)], [(1.1, 0.05, 40)], [(1.1, 0.05, 40)]],  # three run names, one patient cohort
    [[(0.9, 0.02, 100), (1.5, 0.02, 30)], [(2.0, 0.01, 500)]],
]


def _dp_accounting(histories: list[list[tuple[float, float, int]]], delta: float) -> float:
    accountant = RdpAccountant()
    for history in histories:
        for sigma, q, steps in history:
            accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("histories", HISTORIES)
def test_agrees_with_dp_accounting(histories: list[list[tuple[float, float, int]]]) -> None:
    assert composed_epsilon(histories, 1e-4) == pytest.approx(_dp_accounting(histories, 1e-4), rel=1e-3)


def test_a_new_run_name_brings_no_fresh_budget_and_nothing_spent_is_zero() -> None:
    one = composed_epsilon([[(1.1, 0.05, 40)]], 1e-4)
    three = composed_epsilon(HISTORIES[1], 1e-4)
    assert one < three < 3 * one  # composition: more than one run's epsilon, less than the sum
    assert composed_epsilon([], 1e-4) == 0.0 and composed_epsilon([[], []], 1e-4) == 0.0
