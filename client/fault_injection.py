"""A named, opt-in pause point that lets the reliability tests kill a real hospital process at an
exact moment of a round.

Why it exists: the property "a hospital killed between training and sending never under-counts
its privacy spend" is about one instant — the round's spend is written to the ledger and the
update is computed, but nothing has left the site yet. A test cannot hit that instant by timing
(local training takes ~1 s), so the ClientApp stops there and waits to be killed.

It does nothing unless the daemon's environment names it:

    MEDFED_FAULT_PAUSE_AFTER_TRAINING="1,3"   # server rounds at which to pause
    MEDFED_FAULT_PAUSE_RUN=heart-faults       # only in this run (its run name); default: any run
    MEDFED_FAULT_PAUSE_SECONDS=120            # the pause's bound (default 120 s)

When active it says so in the log at every pause, writes `fault-paused-round-<r>` (holding the
process id) into the site's state folder for the test to wait on, sleeps for the bound, and
then carries on normally, so a test that forgets to kill only sees a slow round.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("medfed.client")

PAUSE_ROUNDS_ENV = "MEDFED_FAULT_PAUSE_AFTER_TRAINING"
PAUSE_SECONDS_ENV = "MEDFED_FAULT_PAUSE_SECONDS"
PAUSE_RUN_ENV = "MEDFED_FAULT_PAUSE_RUN"
DEFAULT_PAUSE_S = 120.0


def marker_path(state_dir: Path, server_round: int) -> Path:
    return Path(state_dir) / f"fault-paused-round-{server_round}"


def _pause_rounds() -> set[int]:
    raw = os.environ.get(PAUSE_ROUNDS_ENV, "")
    return {int(part) for part in raw.replace(" ", "").split(",") if part}


def pause_after_training(state_dir: Path, server_round: int | None, run_name: str = "") -> None:
    """Pause here (bounded) if the environment asks for it at this round (of this run); otherwise
    return at once."""
    if server_round is None or server_round not in _pause_rounds():
        return
    if os.environ.get(PAUSE_RUN_ENV) and os.environ[PAUSE_RUN_ENV] != run_name:
        return
    seconds = float(os.environ.get(PAUSE_SECONDS_ENV, DEFAULT_PAUSE_S))
    marker = marker_path(state_dir, server_round)
    log.warning("FAULT INJECTION (%s): round %d trained and its spend recorded; pausing %.0f s before "
                "sending the update so that a test can kill this process", PAUSE_ROUNDS_ENV, server_round, seconds)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\n")
    time.sleep(seconds)
