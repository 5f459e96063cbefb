"""client/privacy/private_trainer.py: epsilon accumulates across rounds and restarts, matches an independent
accountant, is refused at the budget before any gradient, and is written ahead of training."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import RdpAccountant

import client.privacy.private_trainer as pt
from client.privacy.ledger import PrivacyLedger
from client.privacy.private_trainer import NonPrivateTrainer, PrivateTrainer
from client.privacy.trainers import make_trainer
from client.training import train_epochs
from common.config import PrivacyConfig, RunConfig
from common.datasets.contract import Split
from common.errors import DataError, PrivacyBudgetExceededError
from common.evaluation import evaluate_model
from common.models import build_model, get_weights

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
N, FEATURES, BATCH, EPOCHS, ROUNDS = 120, 6, 24, 2, 3  # q = 1/5, 10 steps per round


def tabular(n: int = N, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    return Split(torch.from_numpy(x), torch.from_numpy(y))


def trainer(ledger: PrivacyLedger, run_name: str = "run", **privacy) -> PrivateTrainer:
    cfg = PrivacyConfig(**({"epsilon": 3.0, "delta": 1e-4} | privacy))
    return PrivateTrainer(
        privacy=cfg, num_rounds=ROUNDS, local_epochs=EPOCHS, batch_size=BATCH, num_examples=N,
        ledger=ledger, run_name=run_name, learning_rate=0.2,
    )


def independent_rdp_epsilon(history, delta: float) -> float:
    """Google's dp_accounting, composing the same Poisson-subsampled Gaussian steps."""
    acc = RdpAccountant()
    for sigma, q, steps in history:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def test_epsilon_grows_each_round_up_to_the_budget(tmp_path):
    torch.manual_seed(0)
    led = PrivacyLedger(tmp_path / "ledger.json")
    tr = trainer(led)  # rdp accountant, ghost clipping
    assert tr.sample_rate == pytest.approx(BATCH / N) and tr.steps_per_round == 10
    model, split = build_model("mlp", (FEATURES,), 2), tabular()
    epsilons = []
    for _ in range(ROUNDS):
        result = tr.train_round(model, split, device=CPU)
        assert result.steps == 10 and result.num_examples == N and result.delta == 1e-4
        assert result.noise_multiplier == tr.noise_multiplier > 0
        epsilons.append(result.epsilon)
    assert epsilons == sorted(epsilons) and len(set(epsilons)) == ROUNDS
    assert 0.9 * 3.0 < epsilons[-1] <= 3.0 + 1e-6  # calibrated to use (nearly) the whole budget
    entry = led.entry("run")
    assert entry.history == [(tr.noise_multiplier, tr.sample_rate, ROUNDS * 10)]
    assert [r.completed for r in entry.rounds] == [True] * ROUNDS
    # the returned model is a plain module again: no Opacus hooks or attributes left behind
    assert not any(hasattr(p, "grad_sample") or hasattr(p, "summed_grad") for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    _, metrics, _ = evaluate_model(model, split, device=CPU)
    assert metrics["auc"] > 0.75  # it learned something despite the noise


def test_rdp_epsilon_matches_google_dp_accounting_within_1_percent(tmp_path):
    torch.manual_seed(1)
    led = PrivacyLedger(tmp_path / "ledger.json")
    tr = trainer(led)
    model = build_model("mlp", (FEATURES,), 2)
    for _ in range(2):
        result = tr.train_round(model, tabular(), device=CPU)
        theirs = independent_rdp_epsilon(led.entry("run").history, 1e-4)
        assert result.epsilon == pytest.approx(theirs, rel=0.01)


def test_prv_epsilon_matches_google_pld_accountant(tmp_path):
    torch.manual_seed(2)
    led = PrivacyLedger(tmp_path / "ledger.json")
    tr = trainer(led, accountant="prv", clipping="flat")
    model = build_model("mlp", (FEATURES,), 2)
    first = tr.train_round(model, tabular(), device=CPU)
    result = tr.train_round(model, tabular(), device=CPU)
    assert 0 < first.epsilon < result.epsilon <= 3.0 + 1e-6
    assert led.entry("run").accountant_state()["mechanism"] == "prv"
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    event = dp_accounting.PoissonSampledDpEvent(tr.sample_rate, dp_accounting.GaussianDpEvent(tr.noise_multiplier))
    pld.compose(event, 2 * result.steps)
    theirs = pld.get_epsilon(1e-4)
    assert theirs * 0.99 <= result.epsilon <= theirs * 1.02  # PRV reports an upper bound


# A fresh interpreter per round: nothing survives in memory, only the ledger file.
ROUND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {repo!r})
    from client.privacy.ledger import PrivacyLedger
    from client.privacy.private_trainer import PrivateTrainer
    from common.config import PrivacyConfig
    from common.datasets.contract import Split
    from common.models import build_model
    rng = np.random.default_rng(0)
    x = rng.normal(size=({n}, {features})).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    torch.manual_seed({seed})
    tr = PrivateTrainer(
        privacy=PrivacyConfig(epsilon=3.0, delta=1e-4), num_rounds={rounds}, local_epochs={epochs},
        batch_size={batch}, num_examples={n}, ledger=PrivacyLedger({ledger!r}), run_name="run", learning_rate=0.2,
    )
    r = tr.train_round(build_model("mlp", ({features},), 2), Split(torch.from_numpy(x), torch.from_numpy(y)),
                       device=torch.device("cpu"))
    print("RESULT " + json.dumps([r.epsilon, r.steps, r.noise_multiplier]))
    """
)


def _round_in_new_process(ledger_path: Path, seed: int) -> tuple[float, int, float]:
    code = ROUND_SCRIPT.format(
        repo=str(REPO), ledger=str(ledger_path), seed=seed,
        n=N, features=FEATURES, rounds=ROUNDS, epochs=EPOCHS, batch=BATCH,
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(s for s in done.stdout.splitlines() if s.startswith("RESULT "))
    eps, steps, sigma = json.loads(line[len("RESULT ") :])
    return eps, steps, sigma


def test_spending_survives_restarts_in_new_processes(tmp_path):
    path = tmp_path / "ledger.json"
    eps1, steps1, sigma1 = _round_in_new_process(path, seed=0)
    entry = PrivacyLedger(path).entry("run")  # checked here, in the parent process
    assert entry.spent == eps1 > 0 and entry.steps == steps1 == 10 and len(entry.rounds) == 1
    assert entry.noise_multiplier == sigma1

    eps2, steps2, sigma2 = _round_in_new_process(path, seed=1)
    assert sigma2 == sigma1  # the noise calibrated once is reused after the restart
    assert eps2 > eps1
    entry = PrivacyLedger(path).entry("run")
    assert entry.steps == 20 and [r.epsilon for r in entry.rounds] == [eps1, eps2]
    # the second process continued from the stored history: 20 steps, not 10 from zero
    assert eps2 == pytest.approx(independent_rdp_epsilon([(sigma1, BATCH / N, 20)], 1e-4), rel=0.01)


def test_round_past_the_budget_is_refused_before_any_gradient(tmp_path, monkeypatch):
    torch.manual_seed(0)
    led = PrivacyLedger(tmp_path / "ledger.json")
    tr = trainer(led, clipping="flat")  # Opacus hooks mode
    model, split = build_model("mlp", (FEATURES,), 2), tabular()
    for _ in range(ROUNDS):
        tr.train_round(model, split, device=CPU)
    before = led.entry("run").to_json()
    weights = get_weights(model)

    def no_training(*args, **kwargs):
        raise AssertionError("a gradient step was attempted past the budget")

    monkeypatch.setattr(pt, "train_epochs", no_training)
    with pytest.raises(PrivacyBudgetExceededError, match="budget of 3.0") as err:
        tr.train_round(model, split, device=CPU)
    assert "Nothing was trained" in err.value.problem
    after = led.entry("run").to_json()
    assert after.pop("status") == "exhausted" and before.pop("status") == "ok"
    after.pop("updated_at"), before.pop("updated_at")
    assert after == before  # nothing else changed
    for old, new in zip(weights, get_weights(model)):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(PrivacyBudgetExceededError):  # stays refused, also for a new trainer
        trainer(led, clipping="flat").train_round(model, split, device=CPU)


def test_spend_is_written_before_training_so_a_crash_never_under_counts(tmp_path, monkeypatch):
    torch.manual_seed(0)
    led = PrivacyLedger(tmp_path / "ledger.json")
    tr = trainer(led)
    projected = tr.projected_epsilon()

    def crash_after_first_epoch(*args, **kwargs):
        def progress(epoch, loss):
            entry = led.entry("run")  # mid-training, the round is already on disk
            assert entry.spent == projected and entry.steps == tr.steps_per_round
            raise RuntimeError("site crashed mid-training")

        return train_epochs(*args, **(kwargs | {"progress": progress}))

    monkeypatch.setattr(pt, "train_epochs", crash_after_first_epoch)
    with pytest.raises(RuntimeError, match="crashed"):
        tr.train_round(build_model("mlp", (FEATURES,), 2), tabular(), device=CPU)
    entry = led.entry("run")
    assert entry.spent == projected > 0 and entry.rounds[-1].completed is False
    assert entry.steps == tr.steps_per_round  # >= the 5 steps really taken
    monkeypatch.undo()
    # the crashed round stays counted: the next round starts from it
    result = trainer(led).train_round(build_model("mlp", (FEATURES,), 2), tabular(), device=CPU)
    assert result.epsilon > projected and led.entry("run").steps == 2 * tr.steps_per_round


def test_small_sites_batch_cap_and_refusal(tmp_path):
    led = PrivacyLedger(tmp_path / "ledger.json")
    with pytest.raises(DataError, match="only 9 training examples"):
        PrivateTrainer(privacy=PrivacyConfig(), num_rounds=1, local_epochs=1, batch_size=32, num_examples=9,
                       ledger=led, run_name="tiny")
    tr = PrivateTrainer(privacy=PrivacyConfig(), num_rounds=1, local_epochs=1, batch_size=128, num_examples=12,
                        ledger=led, run_name="small")
    assert tr.batch_size == 12 and tr.sample_rate == 1.0  # never q > 1
    result = tr.train_round(build_model("mlp", (FEATURES,), 2), tabular(12), device=CPU)
    assert result.steps == 1 and 0 < result.epsilon <= 8.0
    with pytest.raises(DataError, match="set up for 12"):
        tr.train_round(build_model("mlp", (FEATURES,), 2), tabular(20), device=CPU)


def test_non_private_trainer_reports_no_dp_and_make_trainer_picks(tmp_path):
    led = PrivacyLedger(tmp_path / "ledger.json")
    cfg = RunConfig.from_flower({"privacy-mode": "none", "secagg": False, "num-sites": 2})
    tr = make_trainer(cfg, num_examples=N, ledger_path=led.path, run_name="run")
    assert isinstance(tr, NonPrivateTrainer)
    result = tr.train_round(build_model("mlp", (FEATURES,), 2), tabular(), device=CPU)
    assert result.epsilon is None and result.privacy_label == "no sample-level DP"
    assert led.scopes() == []  # nothing is recorded without sample-level DP
    assert isinstance(make_trainer(RunConfig(), num_examples=N, ledger_path=led.path, run_name="run"), PrivateTrainer)


@pytest.mark.parametrize("private", [False, True])
def test_fedprox_pulls_towards_the_global_weights(tmp_path, private):
    def distance_after(mu: float) -> float:
        torch.manual_seed(3)
        model = build_model("mlp", (FEATURES,), 2)
        start = get_weights(model)
        if private:
            tr = PrivateTrainer(privacy=PrivacyConfig(epsilon=3.0), num_rounds=2, local_epochs=3, batch_size=BATCH,
                                num_examples=N, ledger=PrivacyLedger(tmp_path / f"l{mu}.json"), run_name="run",
                                learning_rate=0.1)
        else:
            tr = NonPrivateTrainer(local_epochs=3, batch_size=BATCH, num_examples=N, learning_rate=0.1)
        tr.train_round(model, tabular(), device=CPU, proximal_mu=mu, global_weights=start)
        return float(sum(np.sum((a - b) ** 2) for a, b in zip(get_weights(model), start)))

    assert distance_after(5.0) < 0.5 * distance_after(0.0)


@pytest.mark.slow
def test_dp_sgd_on_pneumoniamnist_reaches_auc_090(data_dir, tmp_path):
    """Centralised DP-SGD (epsilon 8, ghost clipping) on the real chest X-rays."""
    start = time.perf_counter()
    npz = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist.npz")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(npz["train_labels"]))  # the file is grouped by class
    x_train = npz["train_images"][order].astype(np.float32) / 255.0
    mean, std = float(x_train.mean()), float(x_train.std())  # statistics of the training split only

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        x = (images.astype(np.float32) / 255.0 - mean) / std
        return Split(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(labels.reshape(-1).astype(np.int64)))

    train = split(npz["train_images"][order], npz["train_labels"][order])
    test = split(npz["test_images"], npz["test_labels"])
    torch.manual_seed(0)
    model = build_model("cnn", (1, 28, 28), 2)
    epochs = 5
    tr = PrivateTrainer(
        privacy=PrivacyConfig(epsilon=8.0, delta=1e-4, clipping="ghost", max_grad_norm=1.0),
        num_rounds=1, local_epochs=epochs, batch_size=256, num_examples=len(train),
        ledger=PrivacyLedger(tmp_path / "ledger.json"), run_name="central", learning_rate=0.5, momentum=0.9,
    )
    result = tr.train_round(model, train, device=CPU)
    _, metrics, _ = evaluate_model(model, test, device=CPU)
    elapsed = time.perf_counter() - start
    print(f"\npneumoniamnist DP-SGD: eps={result.epsilon:.2f} sigma={result.noise_multiplier:.3f} "
          f"steps={result.steps} auc={metrics['auc']:.4f} acc={metrics['accuracy']:.4f} time={elapsed:.1f}s")
    assert result.epsilon <= 8.0 + 1e-6
    assert metrics["auc"] >= 0.90
