"""client.daemon.supervisor.ReconnectPacer: a hospital killed mid-run is back as soon as the server lets it in.

The clock is a fake, so these tests check the decisions, not the machine's speed.
"""

from __future__ import annotations

from client.daemon import supervisor as daemon
from client.daemon.supervisor import KNOWN_NODE_RETRY_S, KNOWN_NODE_WINDOW_S, MAX_BACKOFF_S, ReconnectPacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SHORT = KNOWN_NODE_RETRY_S * 1.2  # the longest a known-node retry may wait (jitter included)


def test_refusals_of_a_known_key_never_grow_the_backoff() -> None:
    clock = FakeClock()
    pacer = ReconnectPacer(clock)
    for _ in range(40):  # a server that keeps the old session "online" for 40 attempts
        delay = pacer.after_exit(connected=False, known_key_refused=True)
        assert delay <= SHORT
        clock.advance(delay + 10)
    assert pacer.failures == 0


def test_after_refusals_any_exit_is_retried_at_the_short_pace_for_the_window() -> None:
    """The sequence seen in CI: refused while the old session was still online, then an exit of
    another kind. The next attempt must still come within seconds, not after a minute's backoff."""
    clock = FakeClock()
    pacer = ReconnectPacer(clock)
    for _ in range(12):
        clock.advance(pacer.after_exit(connected=False, known_key_refused=True) + 10)
    for _ in range(5):
        delay = pacer.after_exit(connected=False, known_key_refused=False)
        assert delay <= SHORT
        clock.advance(delay + 10)
    clock.advance(KNOWN_NODE_WINDOW_S)  # long after the last refusal: the server is really away
    delays = [pacer.after_exit(connected=False, known_key_refused=False) for _ in range(8)]
    assert delays[-1] >= 0.8 * MAX_BACKOFF_S and delays[0] < delays[-1]


def test_a_server_that_is_away_backs_off_and_a_connection_resets_it() -> None:
    clock = FakeClock()
    pacer = ReconnectPacer(clock)
    delays = [pacer.after_exit(connected=False, known_key_refused=False) for _ in range(8)]
    assert delays[0] < 3 and delays[-1] >= 0.8 * MAX_BACKOFF_S
    assert pacer.after_exit(connected=True, known_key_refused=False) < 3


def test_refused_for_measures_the_current_run_of_refusals() -> None:
    clock = FakeClock()
    pacer = ReconnectPacer(clock)
    assert pacer.refused_for() == 0.0
    pacer.after_exit(connected=False, known_key_refused=True)
    clock.advance(daemon.REFUSED_LIMIT_S + 1)
    assert pacer.refused_for() > daemon.REFUSED_LIMIT_S  # the supervisor then treats the key as revoked
    pacer.after_exit(connected=True, known_key_refused=False)
    assert pacer.refused_for() == 0.0
