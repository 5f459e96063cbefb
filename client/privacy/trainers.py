"""The one place a site picks its local trainer: the privacy mode names it by key.

A `PrivacyMode` (common/privacy/) says *which* local training it needs (`local_training`:
"dp-sgd" or "plain") without importing client code; this registry maps each key to the code.
A new mode that trains like an existing one reuses its key and needs nothing here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Union

from client.privacy.ledger import PrivacyLedger
from client.privacy.private_trainer import NonPrivateTrainer, PrivateTrainer
from common.config import PrivacyConfig, RunConfig
from common.privacy import privacy_mode
from common.privacy.mode import DP_SGD, PLAIN
from common.registry import Registry

Trainer = Union[PrivateTrainer, NonPrivateTrainer]
# (run config, the site's privacy settings, training examples, ledger file, run name,
#  the site's lifetime (total-epsilon, delta) or None) -> trainer
TrainerFactory = Callable[[RunConfig, PrivacyConfig, int, Path, str, "tuple[float, float] | None"], Trainer]

TRAINERS: Registry[TrainerFactory] = Registry("local trainer", setting="privacy-mode")


def make_trainer(
    cfg: RunConfig,
    *,
    privacy: PrivacyConfig | None = None,
    num_examples: int,
    ledger_path: Path,
    run_name: str,
    lifetime_budget: tuple[float, float] | None = None,
) -> Trainer:
    """The trainer `privacy.mode` asks for (`privacy`: the site's own settings, whose budget
    overrides the run's; default the run's; `lifetime_budget`: the site's (total-epsilon,
    delta) over all its runs, default the run's own budget). Only a trainer that needs the
    ledger opens it, so a site without sample-level DP never reads or creates one."""
    privacy = privacy if privacy is not None else cfg.privacy
    local = privacy_mode(privacy.mode).local_training
    build = TRAINERS.get(GAN_PREFIX + local if cfg.synthesis.task == "synthesize" else local)
    return build(cfg, privacy, num_examples, ledger_path, run_name, lifetime_budget)


def _dp_sgd_accounting(cfg: RunConfig, privacy: PrivacyConfig, num_examples: int, ledger_path: Path, run_name: str,
                       lifetime_budget: tuple[float, float] | None) -> dict[str, Any]:
    """What every DP-SGD trainer (classifier or GAN discriminator) needs to plan, reserve and
    refuse its spend: one list, so the two trainers can never be accounted differently."""
    t = cfg.training
    return dict(
        privacy=privacy,
        num_rounds=cfg.federation.num_rounds,
        local_epochs=t.local_epochs,
        batch_size=t.batch_size,
        num_examples=num_examples,
        ledger=PrivacyLedger(ledger_path),
        run_name=run_name,
        lifetime_budget=lifetime_budget,
    )


def _dp_sgd(cfg: RunConfig, privacy: PrivacyConfig, num_examples: int, ledger_path: Path, run_name: str,
            lifetime_budget: tuple[float, float] | None) -> Trainer:
    t = cfg.training
    return PrivateTrainer(
        **_dp_sgd_accounting(cfg, privacy, num_examples, ledger_path, run_name, lifetime_budget),
        learning_rate=t.learning_rate,
        momentum=t.momentum,
        augmentation=t.augmentation,
        multiplicity=t.augmentation_multiplicity,
        class_balance=t.class_balance,
    )


def _plain(cfg: RunConfig, privacy: PrivacyConfig, num_examples: int, ledger_path: Path, run_name: str,
           lifetime_budget: tuple[float, float] | None) -> Trainer:
    t = cfg.training
    return NonPrivateTrainer(
        local_epochs=t.local_epochs,
        batch_size=t.batch_size,
        num_examples=num_examples,
        learning_rate=t.learning_rate,
        momentum=t.momentum,
        augmentation=t.augmentation,
        multiplicity=t.augmentation_multiplicity,
        class_balance=t.class_balance,
    )


def _gan_dp_sgd(cfg: RunConfig, privacy: PrivacyConfig, num_examples: int, ledger_path: Path, run_name: str,
                lifetime_budget: tuple[float, float] | None) -> Trainer:
    from client.privacy.gan_trainer import PrivateGANTrainer

    return PrivateGANTrainer(
        synth_learning_rate=cfg.synthesis.learning_rate,
        **_dp_sgd_accounting(cfg, privacy, num_examples, ledger_path, run_name, lifetime_budget),
    )


def _gan_plain(cfg: RunConfig, privacy: PrivacyConfig, num_examples: int, ledger_path: Path, run_name: str,
               lifetime_budget: tuple[float, float] | None) -> Trainer:
    from client.privacy.gan_trainer import NonPrivateGANTrainer

    t = cfg.training
    return NonPrivateGANTrainer(
        synth_learning_rate=cfg.synthesis.learning_rate,
        local_epochs=t.local_epochs,
        batch_size=t.batch_size,
        num_examples=num_examples,
    )


# task = "synthesize": the same local-training key with this prefix (the conditional GAN's
# trainers, client/privacy/gan_trainer.py; DP-SGD on the discriminator only).
GAN_PREFIX = "gan-"

TRAINERS.register(DP_SGD, _dp_sgd)
TRAINERS.register(PLAIN, _plain)
TRAINERS.register(GAN_PREFIX + DP_SGD, _gan_dp_sgd)
TRAINERS.register(GAN_PREFIX + PLAIN, _gan_plain)
