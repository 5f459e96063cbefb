"""The site's side of a round, as a Flower (legacy NumPyClient) client.

fit: a run the site's policy refuses (a privacy mode it does not allow) gets the global weights
back with weight 0 and the site's reason; otherwise validate the received global weights ->
private training (refused before any gradient if the run's or the site's lifetime budget would
be exceeded) -> return weights, example count and the accountant's epsilon. No un-noised
training statistic leaves a private site (no training loss). The mods in client/mods.py then
turn the weights into a bounded update and mask it (SecAgg+).
evaluate: the global model on the site's own test split at the operating point the server sends
(threshold, temperature), with 95 % bootstrap intervals; or, in the validation phase of the
federated path, confusion counts on the fixed threshold grid and NLL sums on the temperature grid
of the site's validation split (common/operating_point.py). Only aggregate counts and metrics
leave, and only when the site's policy releases them (`release-evaluation`): they are not
differentially private (docs/PRIVACY.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from flwr.client import NumPyClient

from client.fault_injection import pause_after_training
from client.reproducibility import seed_site_work
from client.site import SiteRun, load_site_data
from client.training import resolve_schedule, round_learning_rate
from client.privacy.trainers import Trainer, make_trainer
from common.config import RunConfig
from common.device import pick_device
from common.errors import PrivacyBudgetExceededError
from common.calibration import nll, nll_on_grid, probabilities
from common.evaluation import evaluate_at, predict_logits
from common.operating_point import (
    EVAL_PHASE_KEY,
    TEMPERATURE_KEY,
    THRESHOLD_KEY,
    VAL_COUNTS_KEY,
    VAL_NLL_KEY,
    VALIDATION_PHASE,
    grid_counts,
)
from common.models import build_model, get_weights, model_options, resolve_model_name, set_weights
from common.node_config import PRIVACY_LEDGER_FILE
from common.privacy import privacy_mode
from common.synthesis.setup import encode_site, is_synthesis, synthesis_model
from common.updates import SERVER_ROUND_KEY

log = logging.getLogger("medfed.client")


class MedfedClient(NumPyClient):
    def __init__(self, cfg: RunConfig, settings: SiteRun, run_name: str) -> None:
        self.cfg = cfg
        self.settings = settings
        self.run_name = run_name
        self.device = pick_device(settings.device)
        self.synthesis = is_synthesis(cfg)
        if self.synthesis:  # the GAN, on raw rows in the public schema's encoding (no site statistics)
            self.dataset, raw = load_site_data(settings, normalise=False)
            encoder, model = synthesis_model(cfg, self.dataset)
            self.site = encode_site(raw, encoder)
            self.model = model.to(self.device)
            return
        self.dataset, self.site = load_site_data(settings)
        name = resolve_model_name(cfg.training.model, self.dataset.modality)
        sizes = model_options(self.dataset.modality, cfg.data.hash_buckets)
        self.model = build_model(name, self.dataset.input_shape, self.dataset.num_classes, **sizes).to(self.device)

    # -- Flower API --------------------------------------------------------------------
    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return get_weights(self.model)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        set_weights(self.model, parameters)  # refuses wrong architecture / dtype / NaN before training
        server_round = config.get(SERVER_ROUND_KEY)
        seed_site_work(self.settings.seed, self.settings.name, int(server_round or 0), "fit")
        metrics: dict[str, Any] = {"site": self.settings.name, "privacy_mode": self.settings.privacy.mode}
        if self.settings.refusal:
            log.error("site %s refuses the run: %s", self.settings.name, self.settings.refusal)
            return parameters, 0, {**metrics, "refused": self.settings.refusal, "refused_by": "site policy"}
        try:
            result = self._trainer().train_round(
                self.model,
                self.site.train,
                device=self.device,
                proximal_mu=float(config.get("proximal_mu", 0.0)),
                global_weights=parameters,
                learning_rate=round_learning_rate(
                    self.cfg.training.learning_rate, resolve_schedule(self.cfg.training.learning_rate_schedule, self.dataset.modality),
                    int(server_round or 1), self.cfg.federation.num_rounds,
                ),
            )
        except PrivacyBudgetExceededError as err:
            # Nothing derived from the data leaves: the global weights go back with weight 0.
            log.error("site %s refuses to train: %s", self.settings.name, err.message)
            metrics["refused"] = err.problem
            metrics["refused_by"] = "privacy budget"
            return parameters, 0, metrics
        if not privacy_mode(self.settings.privacy.mode).private:
            metrics["train_loss"] = float(result.loss)  # an un-noised statistic: only without DP
        if result.epsilon is not None:
            metrics["epsilon"] = float(result.epsilon)
            metrics["delta"] = float(result.delta)
            metrics["noise_multiplier"] = float(result.noise_multiplier)
            metrics["epsilon_budget"] = float(self.settings.privacy.epsilon)
        pause_after_training(self.settings.state_dir, int(server_round) if server_round is not None else None,
                             self.run_name)
        return get_weights(self.model), int(result.num_examples), metrics

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict]:
        withheld = self.settings.refusal or (
            "a synthesis run releases no evaluation (its quality is measured on the synthetic data)"
            if self.synthesis else ""
        ) or (
            "" if self.settings.policy.release_evaluation else "the site's policy does not release evaluation "
            "metrics (release-evaluation = false)"
        )
        if withheld:
            return 0.0, 0, {"site": self.settings.name, "withheld": withheld}
        set_weights(self.model, parameters)
        if config.get(EVAL_PHASE_KEY) == VALIDATION_PHASE:
            return self._validation_counts()
        threshold = config.get(THRESHOLD_KEY)
        result = evaluate_at(
            self.model,
            self.site.test,
            threshold=float(threshold) if threshold is not None else None,
            temperature=float(config.get(TEMPERATURE_KEY, 1.0)),
            resamples=self.cfg.evaluation.bootstrap_resamples,
            device=self.device,
        )
        out: dict[str, Any] = {"site": self.settings.name}
        out.update({k: float(v) for k, v in result.metrics.items() if v is not None})
        out.update({k: float(v) for k, v in result.calibration.items() if v is not None and k != "temperature"})
        out["intervals"] = json.dumps(result.intervals)
        out["confusion"] = json.dumps(result.confusion)
        return float(result.loss), len(self.site.test), out

    def _validation_counts(self) -> tuple[float, int, dict]:
        """The federated path's validation release: counts on the threshold grid (binary) and
        NLL sums on the temperature grid, of the site's validation split; never its test split."""
        val = self.site.val
        out: dict[str, Any] = {"site": self.settings.name, EVAL_PHASE_KEY: VALIDATION_PHASE}
        if val is None or len(val) == 0:
            return 0.0, 0, {**out, "withheld": "the site has no validation split"}
        logits = predict_logits(self.model, val.x, device=self.device).double().numpy()
        y = val.y.numpy()
        if logits.shape[1] == 2:
            out[VAL_COUNTS_KEY] = json.dumps(grid_counts(y, probabilities(logits)[:, 1]).tolist())
        out[VAL_NLL_KEY] = json.dumps([float(v) for v in nll_on_grid(logits, y)])
        return nll(logits, y), len(val), out

    # -- helpers -------------------------------------------------------------------------
    def _trainer(self) -> Trainer:
        return make_trainer(
            self.cfg,
            privacy=self.settings.privacy,
            num_examples=len(self.site.train),
            ledger_path=self.settings.state_dir / PRIVACY_LEDGER_FILE,
            run_name=self.run_name,
            lifetime_budget=(float(self.settings.policy.total_epsilon), self.settings.policy.delta),
        )
