"""Sample-level DP-SGD at a site, with privacy spending that survives restarts.

One `PrivateTrainer` serves one run (its name is the ledger's key) at one site. Its promise:
the site's data never takes part in a gradient step that would push the run past its
(epsilon, delta) budget, and the ledger never under-counts, whatever crashes when. Per round:

1. restore the accountant from the ledger (a fresh `PrivacyEngine` + `load_state_dict`);
2. compute the epsilon the round *would* reach (the round's steps added to a copy of the
   history); if that exceeds the budget, mark the run exhausted and refuse, before any
   gradient is computed;
3. write that projected spending to the ledger (write-ahead);
4. train with Opacus (`make_private`: Poisson sampling, flat or ghost clipping, the noise
   multiplier calibrated once per run for the planned number of steps);
5. make sure the ledger holds at least what the real accountant recorded.

The sampling rate is the one Opacus itself uses, q = 1 / ceil(n / batch) (about batch / n):
its Poisson loader draws ceil(n / batch) batches per epoch and its accountant hook records
that q, so the projection and the real history are identical.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import functools
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import IAccountant, create_accountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.augmentation import make_augment
from client.class_balance import make_criterion
from client.privacy.lifetime import run_epsilon
from client.privacy.ledger import HistoryItem, LedgerEntry, PrivacyLedger, RoundRecord
from client.training import make_optimizer, train_epochs
from common.config import CLASS_BALANCES, PrivacyConfig
from common.datasets.contract import Split
from common.errors import ConfigError, DataError, PrivacyBudgetExceededError
from common.privacy import privacy_mode
from common.privacy.mode import DP_SGD, NO_SAMPLE_DP_LABEL

log = logging.getLogger(__name__)

MIN_PRIVATE_EXAMPLES = 10  # below this, DP-SGD noise swamps any signal and q is ~1
EPSILON_TOLERANCE = 1e-6


@dataclass(frozen=True)
class TrainResult:
    """What one local round produced (the weights stay in the model passed in)."""

    loss: float
    epsilon: float | None  # cumulative for the run; None without sample-level DP
    delta: float | None
    steps: int  # optimizer steps taken this round
    noise_multiplier: float | None
    num_examples: int

    @property
    def privacy_label(self) -> str:
        if self.epsilon is None:
            return NO_SAMPLE_DP_LABEL
        return f"sample-level DP: epsilon={self.epsilon:.3f}, delta={self.delta:g}"


def extend_history(
    history: Sequence[HistoryItem], noise_multiplier: float, sample_rate: float, steps: int
) -> list[HistoryItem]:
    """`history` after `steps` more steps, merged exactly as Opacus' accountants merge them."""
    out = [tuple(h) for h in history]
    if out and out[-1][0] == noise_multiplier and out[-1][1] == sample_rate:
        out[-1] = (noise_multiplier, sample_rate, out[-1][2] + steps)
    elif steps > 0:
        out.append((noise_multiplier, sample_rate, steps))
    return out  # type: ignore[return-value]


@contextlib.contextmanager
def _opacus_notices_off() -> Iterator[None]:
    """Silence two Opacus notices that would otherwise repeat every round:
    * "Secure RNG turned off": secure_mode needs torchcsprng, which has no build for this
      torch; noise comes from torch's default generator (a documented deployment limitation).
    * "Optimal order is the largest alpha": RDP at high noise / few steps; the epsilon reported
      is then a valid but slightly loose (conservative) bound, and noise calibration probes
      such noise levels on purpose.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield


@functools.lru_cache(maxsize=32)
def calibrate_noise(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Opacus' noise calibration (a binary search over the accountant: slow with RDP at low
    noise, hence the cache; the result is a pure function of its arguments)."""
    with _opacus_notices_off():
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant=accountant
            )
        )


def _quiet_engine(accountant: str) -> PrivacyEngine:
    with _opacus_notices_off():
        return PrivacyEngine(accountant=accountant)


def _check_class_balance(name: str) -> None:
    if name not in CLASS_BALANCES:
        raise ConfigError(f"class-balance={name!r} is unknown.", f"use one of {', '.join(CLASS_BALANCES)}.")


@dataclass(frozen=True)
class _LocalRound:
    """The server's per-round settings for local training: where, and how far from the global model."""

    device: torch.device
    proximal_mu: float
    global_weights: Sequence[np.ndarray] | None
    learning_rate: float


class _LocalTrainer(abc.ABC):
    """What PrivateTrainer and NonPrivateTrainer share: the round's entry point and the plumbing
    around `train_epochs`, so the two differ only in how a round is run (with DP-SGD or without)."""

    local_epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    augmentation: str = "none"
    multiplicity: int = 1
    class_balance: str = "none"

    def train_round(
        self,
        model: nn.Module,
        train_split: Split,
        *,
        device: torch.device,
        proximal_mu: float = 0.0,
        global_weights: Sequence[np.ndarray] | None = None,
        learning_rate: float | None = None,
    ) -> TrainResult:
        """One round of local training on `model` (a plain nn.Module, updated in place);
        `learning_rate` this round's rate (a schedule's), default the trainer's."""
        lr = self.learning_rate if learning_rate is None else learning_rate
        return self._round(model, train_split, _LocalRound(device, proximal_mu, global_weights, lr))

    @abc.abstractmethod
    def _round(self, model: nn.Module, split: Split, local: _LocalRound) -> TrainResult: ...

    def _optimizer_and_loader(
        self, model: nn.Module, split: Split, local: _LocalRound, *, shuffle: bool
    ) -> tuple[torch.optim.Optimizer, DataLoader]:
        model.to(local.device)
        optimizer = make_optimizer(model, local.learning_rate, self.momentum)
        return optimizer, DataLoader(TensorDataset(split.x, split.y), batch_size=self.batch_size, shuffle=shuffle)

    def _epochs(
        self,
        model: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        local: _LocalRound,
        criterion: Callable[..., torch.Tensor] | None = None,
    ) -> float:
        return train_epochs(
            model,
            loader,
            epochs=self.local_epochs,
            optimizer=optimizer,
            device=local.device,
            proximal_mu=local.proximal_mu,
            global_weights=local.global_weights,
            criterion=criterion,
            augment=make_augment(self.augmentation),  # global RNG: seeded per site and round
            multiplicity=self.multiplicity,
        )


class PrivateTrainer(_LocalTrainer):
    """DP-SGD trainer for one run at one site (see module docstring)."""

    def __init__(
        self,
        *,
        privacy: PrivacyConfig,
        num_rounds: int,
        local_epochs: int,
        batch_size: int,
        num_examples: int,
        ledger: PrivacyLedger,
        run_name: str,
        learning_rate: float = 0.5,
        momentum: float = 0.9,
        allow_budget_change: bool = False,
        lifetime_budget: tuple[float, float] | None = None,
        augmentation: str = "none",
        multiplicity: int = 1,
        class_balance: str = "none",
    ) -> None:
        """`lifetime_budget`: the site's (total-epsilon, delta) over all runs on its data (its
        policy); None takes the fail-closed default, the run's own (epsilon, delta).
        `augmentation`/`multiplicity`: see client/training.py; K copies of an example are one
        example to the sampler, the clipping and the accountant, so nothing here depends on K.
        `class_balance`: the site's loss corrected by its own class counts (client/class_balance.py);
        a per-example loss, so nothing here depends on it either."""
        if privacy_mode(privacy.mode).local_training != DP_SGD:
            raise ConfigError(
                f"PrivateTrainer implements DP-SGD, which privacy-mode={privacy.mode!r} does not use.",
                "use client.privacy.trainers.make_trainer(), which picks the trainer the privacy mode names.",
            )
        problems = privacy.problems()
        if problems:
            raise ConfigError("Invalid privacy settings:\n  - " + "\n  - ".join(problems), "fix the values above.")
        if num_rounds < 1 or local_epochs < 1 or batch_size < 1:
            raise ConfigError(
                f"num_rounds={num_rounds}, local_epochs={local_epochs}, batch_size={batch_size} must all be >= 1.",
                "fix the run configuration.",
            )
        make_augment(augmentation)  # an unknown name fails before any ledger is touched
        _check_class_balance(class_balance)
        if multiplicity < 1 or (multiplicity > 1 and augmentation == "none"):
            raise ConfigError(
                f"augmentation-multiplicity={multiplicity} with augmentation={augmentation!r} is invalid.",
                "use augmentation-multiplicity >= 1, and > 1 only with an augmentation.",
            )
        if multiplicity > 1 and privacy.clipping == "ghost":
            raise ConfigError(
                f"augmentation-multiplicity={multiplicity} needs per-example gradients, which ghost clipping "
                "does not keep (it would clip each augmented copy on its own).",
                "set clipping='flat' or augmentation-multiplicity=1.",
            )
        if num_examples < MIN_PRIVATE_EXAMPLES:
            raise DataError(
                f"This site has only {num_examples} training examples; DP-SGD needs at least "
                f"{MIN_PRIVATE_EXAMPLES} (with fewer, the noise drowns every update).",
                "leave this site out of the federation, merge it with a larger site, or use privacy-mode=none "
                "only if the data owner accepts training without sample-level DP.",
            )
        self.privacy = privacy
        self.ledger = ledger
        self.run_name = run_name
        self.num_examples = num_examples
        self.local_epochs = local_epochs
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.augmentation = augmentation
        self.multiplicity = multiplicity
        self.class_balance = class_balance
        self.batch_size = min(batch_size, num_examples)  # q > 1 would break the accountant
        self.steps_per_epoch = math.ceil(num_examples / self.batch_size)
        self.sample_rate = 1.0 / self.steps_per_epoch
        self.steps_per_round = local_epochs * self.steps_per_epoch
        self.planned_steps = num_rounds * self.steps_per_round
        total_epsilon, lifetime_delta = lifetime_budget or (privacy.epsilon, privacy.delta)
        ledger.set_lifetime_budget(total_epsilon=total_epsilon, delta=lifetime_delta)
        entry = ledger.open_scope(
            run_name,
            accountant=privacy.accountant,
            delta=privacy.delta,
            epsilon_budget=privacy.epsilon,
            allow_budget_change=allow_budget_change,
        )
        if entry.noise_multiplier is None:
            entry = self._calibrate(entry)
        self.noise_multiplier: float = entry.noise_multiplier  # type: ignore[assignment]

    # ------------------------------------------------------------------ accounting

    def _calibrate(self, entry: LedgerEntry) -> LedgerEntry:
        """Noise for the whole planned run, computed once and kept in the ledger."""
        try:
            sigma = calibrate_noise(
                entry.epsilon_budget, entry.delta, self.sample_rate, self.planned_steps, entry.accountant
            )
        except ValueError as err:
            raise ConfigError(
                f"No noise level reaches epsilon={entry.epsilon_budget} at delta={entry.delta} over "
                f"{self.planned_steps} steps (sample rate {self.sample_rate:.4g}): {err}",
                "raise epsilon or delta, or plan fewer rounds / local epochs or a smaller batch.",
            ) from None
        log.info("run %s: noise multiplier %.4f for %d planned steps", self.run_name, sigma, self.planned_steps)

        def store(e: LedgerEntry) -> None:
            e.noise_multiplier = float(sigma)
            e.sample_rate = self.sample_rate
            e.planned_steps = self.planned_steps

        return self.ledger.update(self.run_name, store)

    def _entry(self) -> LedgerEntry:
        entry = self.ledger.entry(self.run_name)
        if entry is None:
            raise DataError(
                f"Run {self.run_name!r} disappeared from the privacy ledger {self.ledger.path}.",
                "restore the ledger from backup; it is the only record of this site's privacy spending.",
            )
        return entry

    def _restore_engine(self, entry: LedgerEntry) -> PrivacyEngine:
        engine = _quiet_engine(entry.accountant)
        if entry.history:
            engine.accountant.load_state_dict(entry.accountant_state())
        return engine

    def _epsilon(self, accountant: IAccountant, delta: float) -> float:
        """The run's epsilon after `accountant`'s history. RDP comes from the ledger's cached RDP
        curves (client/privacy/lifetime.py: Opacus' own formula, microseconds instead of the
        0.1 s of `get_epsilon`, which recomputes every order); PRV asks Opacus."""
        if not accountant.history:
            return 0.0
        if accountant.mechanism() == "rdp":
            return run_epsilon(accountant.history, delta, self.ledger.curves())
        with _opacus_notices_off():
            return float(accountant.get_epsilon(delta=delta))

    def projected_epsilon(self) -> float:
        """The epsilon this run would reach after one more round (no side effects)."""
        entry = self._entry()
        sim = create_accountant(entry.accountant)
        sim.history = extend_history(entry.history, self.noise_multiplier, self.sample_rate, self.steps_per_round)
        return self._epsilon(sim, entry.delta)

    def _refusal(self, entry: LedgerEntry, projected: float | None) -> PrivacyBudgetExceededError:
        if projected is None:
            would = "is refused: it has exhausted"
        else:
            would = f"would raise epsilon to {projected:.4f}, above"
        return PrivacyBudgetExceededError(
            f"Training run {self.run_name!r} {would} its budget of {entry.epsilon_budget} "
            f"(delta={entry.delta}; spent {entry.spent:.4f} over {len(entry.rounds)} rounds). "
            "Nothing was trained or released this round.",
            "nothing to do at this site: it keeps refusing this run, which is the intended outcome. "
            "A run's recorded budget is never raised, not even by a larger [privacy] epsilon in site.toml. "
            "To train further, the consortium starts a new run under a new name "
            "(`medfed server run --name NEW-NAME`), which this site accounts separately against "
            "the [privacy] epsilon its data owner set in site.toml.",
        )

    def _reserve_round(self) -> tuple[PrivacyEngine, IAccountant, float]:
        """Check the budget and write the round's projected spending, atomically.

        Runs inside the ledger's lock, so two processes training the same run can never
        both pass the check against the same old spending. Returns the engine restored from
        the ledger (before this round), the simulated accountant and the projected epsilon;
        raises PrivacyBudgetExceededError (after marking the run exhausted) instead.
        """
        outcome: dict[str, object] = {}

        def reserve(e: LedgerEntry) -> None:
            outcome["before"] = copy.deepcopy(e)
            if e.status == "exhausted":
                outcome["refused"] = None
                return
            engine = self._restore_engine(e)
            sim = copy.deepcopy(engine.accountant)
            sim.history = extend_history(sim.history, self.noise_multiplier, self.sample_rate, self.steps_per_round)
            projected = self._epsilon(sim, e.delta)
            if projected > e.epsilon_budget + EPSILON_TOLERANCE:
                e.status = "exhausted"
                outcome["refused"] = projected
                return
            try:  # the site's lifetime budget, composed over every run on its data (same lock)
                self.ledger.check_lifetime(self.run_name, [(self.noise_multiplier, self.sample_rate, self.steps_per_round)])
            except PrivacyBudgetExceededError as err:
                outcome["lifetime"] = err
                return
            e.history = list(sim.history)  # write-ahead: the round counts before it runs
            e.rounds.append(RoundRecord(epsilon=projected, steps=self.steps_per_round, completed=False))
            outcome.update(engine=engine, sim=sim, projected=projected)

        self._entry()  # a clear error if the run vanished from the ledger
        self.ledger.update(self.run_name, reserve)
        if "refused" in outcome:
            raise self._refusal(outcome["before"], outcome["refused"])  # type: ignore[arg-type]
        if "lifetime" in outcome:
            raise outcome["lifetime"]  # type: ignore[misc]
        return outcome["engine"], outcome["sim"], outcome["projected"]  # type: ignore[return-value]

    # ------------------------------------------------------------------ training

    def _round(self, model: nn.Module, train_split: Split, local: _LocalRound) -> TrainResult:
        """One round of DP-SGD."""
        if len(train_split) != self.num_examples:
            raise DataError(
                f"The training split has {len(train_split)} examples but the trainer was set up for "
                f"{self.num_examples}; the sampling rate and noise were calibrated for that size.",
                "rebuild the trainer after the site's data changes.",
            )
        engine, sim, projected = self._reserve_round()
        steps_before = sum(s for _, _, s in engine.accountant.history)
        loss = self._train(engine, model, train_split, local)
        real_history = list(engine.accountant.history)
        # Normally identical to the projection (same merge rule); only recompute if not.
        real_eps = projected if real_history == sim.history else self._epsilon(engine.accountant, self.privacy.delta)
        steps = sum(s for _, _, s in real_history) - steps_before

        def settle(e: LedgerEntry) -> None:  # keep whichever is larger: projection or reality
            if real_eps > e.rounds[-1].epsilon:
                e.history = real_history
                e.rounds[-1].epsilon = real_eps
            e.rounds[-1].completed = True

        final = self.ledger.update(self.run_name, settle)
        return TrainResult(
            loss=loss,
            epsilon=final.rounds[-1].epsilon,
            delta=final.delta,
            steps=steps,
            noise_multiplier=self.noise_multiplier,
            num_examples=self.num_examples,
        )

    def _train(self, engine: PrivacyEngine, model: nn.Module, split: Split, local: _LocalRound) -> float:
        optimizer, loader = self._optimizer_and_loader(model, split, local, shuffle=False)
        ghost = self.privacy.clipping == "ghost"
        # per-example loss (client/class_balance.py): Opacus clips each example's gradient of it
        loss = make_criterion(self.class_balance, split.y)
        with _opacus_notices_off():
            made = engine.make_private(
                module=model,
                optimizer=optimizer,
                criterion=loss,
                data_loader=loader,
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.privacy.max_grad_norm,
                poisson_sampling=True,
                grad_sample_mode="ghost" if ghost else "hooks",
            )
        if ghost:
            private_model, dp_optimizer, criterion, dp_loader = made
        else:
            (private_model, dp_optimizer, dp_loader), criterion = made, loss
        try:
            return self._epochs(private_model, dp_loader, dp_optimizer, local, criterion)
        finally:
            # Unhook so the caller gets its plain module back, reusable next round.
            private_model.to_standard_module()
            for p in model.parameters():
                for attr in ("summed_grad", "grad_sample", "_norm_sample"):
                    if hasattr(p, attr):
                        delattr(p, attr)
                p.grad = None


class NonPrivateTrainer(_LocalTrainer):
    """Same interface as PrivateTrainer for the modes that train "plain" (none; client-dp, where
    clipping and noise happen on the whole update, outside local training): no sample-level DP."""

    def __init__(
        self,
        *,
        local_epochs: int,
        batch_size: int,
        num_examples: int,
        learning_rate: float = 0.5,
        momentum: float = 0.9,
        num_rounds: int | None = None,  # accepted for interface parity; nothing is budgeted
        augmentation: str = "none",
        multiplicity: int = 1,
        class_balance: str = "none",
    ) -> None:
        make_augment(augmentation)
        _check_class_balance(class_balance)
        self.class_balance = class_balance
        self.augmentation = augmentation
        self.multiplicity = multiplicity
        self.local_epochs = local_epochs
        self.batch_size = max(1, min(batch_size, num_examples))
        self.num_examples = num_examples
        self.learning_rate = learning_rate
        self.momentum = momentum

    def _round(self, model: nn.Module, train_split: Split, local: _LocalRound) -> TrainResult:
        if len(train_split) == 0:
            raise DataError("This site has no training examples.", "check the site's data before joining a federation.")
        optimizer, loader = self._optimizer_and_loader(model, train_split, local, shuffle=True)
        loss = self._epochs(model, loader, optimizer, local, make_criterion(self.class_balance, train_split.y))
        return TrainResult(loss, None, None, self.local_epochs * len(loader), None, len(train_split))

