"""Hospitals dropping out in the middle of a SecAgg+ round (real Flower simulation).

An outer mod makes chosen sites fail at SecAgg+'s "collect masked vectors" stage, i.e. after the
key exchange and before they send their masked update (the moment a crashed hospital matters most):
  round 1: one of four drops -> survivors (3) >= threshold (2): the round completes without it;
  round 2: three of four drop -> below the threshold: the round ends with a clear record;
  round 3: everyone is back: the run proceeds. No wait is unbounded (round timeout 60 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.simulation import run_simulation

from client.client_app import _client_fn
from client.mods import client_mods
from common.config import RunConfig
from server.server_app import make_server_app
from simulations.simulate import backend_config

pytestmark = pytest.mark.slow

DROPS = {1: {1}, 2: {0, 1, 2}}  # round -> partition ids that crash


def crash_mod(msg: Message, ctxt: Context, call_next):
    if msg.metadata.message_type == MessageType.TRAIN and RECORD_KEY_CONFIGS in msg.content.config_records:
        stage = msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
        rnd = int(msg.metadata.group_id or 0)
        if stage == Stage.COLLECT_MASKED_VECTORS and int(ctxt.node_config["partition-id"]) in DROPS.get(rnd, ()):
            raise RuntimeError("simulated hospital crash")
    return call_next(msg, ctxt)


def test_secagg_round_survives_dropouts_above_threshold_and_records_below(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    flat = RunConfig().to_flower() | {
        "dataset": "heart-disease",
        "partition": "natural",
        "num-rounds": 3,
        "local-epochs": 1,
        "min-sites": 2,
        "round-timeout": 60.0,
        "out-dir": str(out),
    }
    RunConfig.from_flower(flat)
    run_simulation(
        server_app=make_server_app(flat),
        client_app=ClientApp(client_fn=_client_fn(flat), mods=[crash_mod, *client_mods(flat)]),
        num_supernodes=4,
        backend_config=backend_config(4),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    rounds = {r["round"]: r for r in metrics["rounds"]}
    assert sorted(rounds) == [0, 1, 2, 3]
    assert rounds[1]["fit"]["sites"] == 3, "round 1 must aggregate the three survivors"
    assert "fit" not in rounds[2], "round 2 had too few survivors to unmask"
    assert any("no aggregate" in e for e in rounds[2]["events"]), rounds[2]["events"]
    assert rounds[3]["fit"]["sites"] == 4, "round 3 proceeds with everyone"
    privacy = json.loads((out / "privacy.json").read_text())
    for site, entry in privacy["sites"].items():
        assert max(entry["epsilon"].values()) <= 8.0 + 1e-6
    assert (out / "report.html").exists()
