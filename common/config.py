"""Validated run configuration.

Flower hands apps a flat, kebab-case `run_config` dict (from `[tool.flwr.app.config]` plus
`--run-config` overrides). `RunConfig.from_flower` turns it into typed, frozen dataclasses and
reports *every* problem at once (Opacus-validator style), each with the value to change.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from common.datasets.builtin import BUILTIN_DATASETS
from common.datasets.formats import FORMATS
from common.errors import ConfigError
from common.privacy import PRIVACY_MODES, privacy_mode
from common.privacy.mode import DP_SGD

# "natural" (a dataset's own hospitals) and the virtual partitions of
# common.datasets.federated.PARTITIONERS (kept in step by a test: that module imports torch).
PARTITIONS = ("natural", "iid", "dirichlet", "quantity")
MODELS = ("auto", "cnn", "gru", "lstm", "mlp", "text-bag", "text-linear", "text-gru", "text-lstm")
# Text: the hashing tokeniser's bounds (common/datasets/tokenise.py; ids are float32 in the
# dataset contract, exact below 2**24).
MAX_TOKENS_LIMIT = 4096
HASH_BUCKETS_LIMIT = 2**24
# Image augmentations a site may apply to its own training batches (client/augmentation.py,
# kept in step by a test: that module imports torch). No flips: see client/augmentation.py.
# "auto": "affine" for images, nothing for signals and tables.
AUGMENTATIONS = ("auto", "none", "affine")
# How the local learning rate moves over the run's rounds (client/training.py round_learning_rate).
LR_SCHEDULES = ("auto", "constant", "cosine")
# A site's training loss corrected by its own class frequencies against label skew
# (client/class_balance.py, kept in step by a test: that module imports torch).
CLASS_BALANCES = ("none", "logit-adjust", "reweight")
MAX_AUGMENTATION_MULTIPLICITY = 16


@dataclass(frozen=True)
class PrivacyConfig:
    """How a site protects its data.

    mode: a name in `common.privacy.PRIVACY_MODES` (sample-dp, client-dp, none); each mode's
    own file in common/privacy/ says what it does and which of the settings below it reads.
    """

    mode: str = "sample-dp"
    epsilon: float = 8.0
    delta: float = 1e-4
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    clipping: str = "ghost"
    # Client-level DP: Gaussian noise multiplier on the aggregate; 0 = calibrate it from
    # (epsilon, delta) over the planned rounds, so `epsilon` means a budget in every mode.
    client_noise_multiplier: float = 0.0

    def problems(self) -> list[str]:
        """The registry decides which modes exist; the mode decides which settings it checks."""
        unknown = PRIVACY_MODES.problem(self.mode)
        if unknown is not None:
            return [unknown]
        return privacy_mode(self.mode).problems(self)


# learning-rate = 0 (the default) means "automatic", resolved by `RunConfig` for every entry
# point alike (`medfed simulate`, `flwr run .`, `medfed server run`). The private rate (0.5,
# momentum 0.9) is tuned for DP-SGD, where every per-example gradient is clipped to
# max-grad-norm before averaging. Without clipping the same step size diverges on the CNN
# (PneumoniaMNIST, 4 hospitals, no DP: AUC 0.71 +- 0.10 and every image called "pneumonia" at
# 0.5; AUC 0.95 at 0.05; docs/BENCHMARKS.md), so a non-private run gets the smaller rate.
AUTO_LEARNING_RATE = 0.0
PRIVATE_LEARNING_RATE = 0.5
NON_PRIVATE_LEARNING_RATE = 0.05


def auto_learning_rate(privacy: PrivacyConfig) -> float:
    """The learning rate `learning-rate = 0` stands for under `privacy` (an unknown mode, which
    validation refuses anyway, gets the private rate)."""
    private = privacy.mode not in PRIVACY_MODES or privacy_mode(privacy.mode).private
    return PRIVATE_LEARNING_RATE if private else NON_PRIVATE_LEARNING_RATE


@dataclass(frozen=True)
class TrainingConfig:
    """Local training at a site."""

    local_epochs: int = 2
    batch_size: int = 128
    learning_rate: float = AUTO_LEARNING_RATE  # RunConfig resolves 0 (see auto_learning_rate)
    momentum: float = 0.9
    proximal_mu: float = 0.01  # used only by strategy=fedprox
    model: str = "auto"
    # Random augmentation of each training batch (images only) and how many augmented copies
    # of each example one step sees; under DP-SGD the K copies' gradients are averaged before
    # the example's clipping (augmentation multiplicity), so they count as one example.
    # "auto" (affine for images) since issue 12: PneumoniaMNIST default simulation, validation AUC
    # 0.942 -> 0.965, test balanced accuracy at the validation threshold 0.816 -> 0.869 (BENCHMARKS.md 4a).
    augmentation: str = "auto"
    augmentation_multiplicity: int = 1
    # "auto" since this session: cosine for images, constant otherwise. PneumoniaMNIST default
    # simulation, 20 rounds, seeds 0-2: test AUC 0.935 -> 0.950, accuracy at the operating point
    # 0.863 -> 0.887 (10 rounds constant -> 20 rounds cosine; BENCHMARKS.md 4a); heart disease
    # lost accuracy with cosine, so tables, signals and text keep the constant rate.
    learning_rate_schedule: str = "auto"
    # The site's loss corrected by its own training class counts (client/class_balance.py):
    # "logit-adjust" or "reweight"; "none" is plain cross-entropy. See docs/PRIVACY.md for what
    # the counts mean for the guarantee.
    class_balance: str = "none"

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.local_epochs < 1:
            out.append(f"local-epochs={self.local_epochs} must be >= 1.")
        if self.batch_size < 1:
            out.append(f"batch-size={self.batch_size} must be >= 1.")
        if not _finite(self.learning_rate) or self.learning_rate < 0:
            out.append(
                f"learning-rate={self.learning_rate} must be a positive number, or 0 for the automatic rate "
                f"({PRIVATE_LEARNING_RATE} with differential privacy, {NON_PRIVATE_LEARNING_RATE} without)."
            )
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            out.append(f"momentum={self.momentum} must be in [0, 1).")
        if not _finite(self.proximal_mu) or self.proximal_mu < 0:
            out.append(f"proximal-mu={self.proximal_mu} must be >= 0.")
        if self.model not in MODELS:
            out.append(f"model={self.model!r} is unknown; use one of {', '.join(MODELS)}.")
        if self.augmentation not in AUGMENTATIONS:
            out.append(f"augmentation={self.augmentation!r} is unknown; use one of {', '.join(AUGMENTATIONS)}.")
        if self.learning_rate_schedule not in LR_SCHEDULES:
            out.append(
                f"learning-rate-schedule={self.learning_rate_schedule!r} is unknown; use one of {', '.join(LR_SCHEDULES)}."
            )
        if self.class_balance not in CLASS_BALANCES:
            out.append(f"class-balance={self.class_balance!r} is unknown; use one of {', '.join(CLASS_BALANCES)}.")
        if not 1 <= self.augmentation_multiplicity <= MAX_AUGMENTATION_MULTIPLICITY:
            out.append(
                f"augmentation-multiplicity={self.augmentation_multiplicity} must be between 1 and "
                f"{MAX_AUGMENTATION_MULTIPLICITY} (each step costs that many forward/backward passes per example)."
            )
        elif self.augmentation_multiplicity > 1 and self.augmentation == "none":
            out.append(
                f"augmentation-multiplicity={self.augmentation_multiplicity} repeats identical copies without "
                "an augmentation; set augmentation='affine' or augmentation-multiplicity=1."
            )
        return out


@dataclass(frozen=True)
class SecAggConfig:
    """SecAgg+ settings (see server.secure_aggregation for how ranges are derived)."""

    enabled: bool = True
    num_shares: int = 3
    reconstruction_threshold: int = 2
    update_bound: float = 4.0
    max_weight: float = 0.0  # 0 = derive from the largest site

    def problems(self, num_sites: int) -> list[str]:
        out: list[str] = []
        if not self.enabled:
            return out
        if self.num_shares <= 2:
            out.append(f"secagg-num-shares={self.num_shares} must be > 2 (Flower's SecAgg+ needs at least 3).")
        if self.reconstruction_threshold < 2:
            out.append(f"secagg-threshold={self.reconstruction_threshold} must be >= 2.")
        if self.reconstruction_threshold >= self.num_shares:
            out.append(
                f"secagg-threshold={self.reconstruction_threshold} must be below secagg-num-shares="
                f"{self.num_shares} (Flower's SecAgg+ rule); lower the threshold or raise the number of shares."
            )
        if num_sites and self.num_shares > num_sites:
            out.append(
                f"secagg-num-shares={self.num_shares} is above the number of sites ({num_sites}); "
                f"use at most {num_sites}."
            )
        if not _finite(self.update_bound) or self.update_bound <= 0:
            out.append(f"secagg-update-bound={self.update_bound} must be a positive number.")
        if not _finite(self.max_weight) or self.max_weight < 0:
            out.append(f"secagg-max-weight={self.max_weight} must be >= 0 (0 derives it from the sites).")
        return out


@dataclass(frozen=True)
class FederationConfig:
    """Rounds, strategy and quorum."""

    num_rounds: int = 20  # 10 before issue 12: the 20-round recipe, BENCHMARKS.md 4a
    strategy: str = "fedavg"
    server_learning_rate: float = 0.1
    # Decay of the server's exponential moving average of the aggregated models (0 = off): the
    # published (evaluated, saved) model is the bias-corrected EMA; sites train from the plain
    # aggregate. Post-processing of the (securely) aggregated model: no privacy cost.
    server_ema: float = 0.0
    min_sites: int = 2
    # Before each round, wait (up to round-timeout) for this many hospitals to be connected,
    # then start with those there, provided at least min-sites are. 0: wait for min-sites only.
    # Lets an operator tolerate a missing hospital (min-sites) yet give one that is restarting
    # the chance to rejoin before the next round starts without it.
    wait_for_sites: int = 0
    round_timeout: float = 600.0
    central_eval: bool = True

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.num_rounds < 1:
            out.append(f"num-rounds={self.num_rounds} must be >= 1.")
        if not _finite(self.server_learning_rate) or self.server_learning_rate <= 0:
            out.append(f"server-learning-rate={self.server_learning_rate} must be a positive number.")
        if not _finite(self.server_ema) or not 0 <= self.server_ema < 1:
            out.append(f"server-ema={self.server_ema} must be in [0, 1) (0 turns the moving average off).")
        if self.min_sites < 1:
            out.append(f"min-sites={self.min_sites} must be >= 1.")
        if self.wait_for_sites < 0:
            out.append(f"wait-for-sites={self.wait_for_sites} must be >= 0 (0: wait for min-sites only).")
        if not _finite(self.round_timeout) or self.round_timeout <= 0:
            out.append(f"round-timeout={self.round_timeout} must be a positive number of seconds.")
        return out


@dataclass(frozen=True)
class DataConfig:
    """Which data the federation trains on."""

    dataset: str = "pneumoniamnist"
    data_path: str = ""
    data_format: str = ""
    num_sites: int = 4
    partition: str = "dirichlet"
    alpha: float = 1.0
    seed: int = 0
    # Each site's validation split: this fraction of its training rows, stratified and fixed by
    # the seed, never trained on. The operating point and the temperature are chosen on it when
    # the operator holds no validation split of its own (docs/EVALUATION.md).
    validation_fraction: float = 0.1
    # Hospital tables (table, text-table): the column holding the class label, and for
    # text-table the column holding the note.
    label_column: str = "label"
    text_column: str = "text"
    # Text: tokens kept per document (longer ones are truncated) and the hashing tokeniser's
    # number of buckets (the text models' embedding rows).
    max_tokens: int = 256
    hash_buckets: int = 8192

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.label_column.strip():
            out.append("label-column is empty; name the table column that holds the class label (default label).")
        if not self.text_column.strip():
            out.append("text-column is empty; name the table column that holds the note's text (default text).")
        elif self.text_column == self.label_column:
            out.append(f"text-column and label-column are both {self.text_column!r}; name two different columns.")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            out.append(f"max-tokens={self.max_tokens} must be in 1..{MAX_TOKENS_LIMIT} (tokens kept per document).")
        if not 2 <= self.hash_buckets <= HASH_BUCKETS_LIMIT:
            out.append(f"hash-buckets={self.hash_buckets} must be in 2..{HASH_BUCKETS_LIMIT} (e.g. 8192).")
        if not self.dataset and not self.data_path:
            out.append("Neither dataset nor data-path is set; name a built-in dataset or a hospital data path.")
        if self.dataset and (problem := BUILTIN_DATASETS.problem(self.dataset)):
            out.append(f"{problem} (Or set data-path and data-format for a hospital's own files.)")
        if self.data_path and not self.data_format:
            out.append("data-path is set but data-format is not; set data-format (see `medfed data check --help`).")
        if self.data_format and (problem := FORMATS.problem(self.data_format)):
            out.append(problem)
        if self.num_sites < 1:
            out.append(f"num-sites={self.num_sites} must be >= 1.")
        if self.partition not in PARTITIONS:
            out.append(f"partition={self.partition!r} is unknown; use one of {', '.join(PARTITIONS)}.")
        if not _finite(self.alpha) or self.alpha <= 0:
            out.append(f"alpha={self.alpha} must be a positive number (smaller = more label skew).")
        if not _finite(self.validation_fraction) or not 0.05 <= self.validation_fraction <= 0.3:
            out.append(
                f"validation-fraction={self.validation_fraction} must be in [0.05, 0.3]: each site needs a "
                "validation split to choose the operating point on, and most of its rows to train on."
            )
        return out


#: How the decision threshold of a binary model is chosen on validation data (common/operating_point.py).
THRESHOLD_RULES = ("youden", "target-sensitivity", "fixed")


@dataclass(frozen=True)
class EvaluationConfig:
    """How the global model is turned into decisions and how its numbers are reported.

    threshold_rule: "youden" (maximise sensitivity + specificity - 1), "target-sensitivity"
    (the most specific threshold that still reaches target_sensitivity), or "fixed" (0.5, i.e.
    arg-max, no choice made). Binary models only; a multiclass model always predicts the arg-max.
    bootstrap_resamples: resamples of the stratified bootstrap behind every 95 % interval.
    """

    threshold_rule: str = "youden"
    target_sensitivity: float = 0.9
    bootstrap_resamples: int = 1000

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.threshold_rule not in THRESHOLD_RULES:
            out.append(f"threshold-rule={self.threshold_rule!r} is unknown; use one of {', '.join(THRESHOLD_RULES)}.")
        if not _finite(self.target_sensitivity) or not 0 < self.target_sensitivity < 1:
            out.append(f"target-sensitivity={self.target_sensitivity} must be between 0 and 1 (e.g. 0.9).")
        if not 100 <= self.bootstrap_resamples <= 20000:
            out.append(f"bootstrap-resamples={self.bootstrap_resamples} must be in 100..20000 (1000 is usual).")
        return out


TASKS = ("classify", "synthesize")


@dataclass(frozen=True)
class SynthesisConfig:
    """What a run produces: a classifier (the default) or a differentially private synthetic table.

    task = "synthesize" trains a conditional GAN (common/synthesis/) on the same apps, SecAgg+ and
    site policy; the discriminator trains with the privacy mode's local training (DP-SGD under
    sample-dp), the generator only through it (docs/PRIVACY.md, "Synthetic data")."""

    task: str = "classify"
    rows: int = 1000  # synthetic rows the server writes after the last round (split evenly by class)
    schema: str = ""  # JSON schema of the table (common/synthesis/schema.py); "" = the built-in dataset's
    learning_rate: float = 0.002  # Adam, for both generator and discriminator

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.task not in TASKS:
            out.append(f"task={self.task!r} is unknown; use one of {', '.join(TASKS)}.")
        if self.rows < 1:
            out.append(f"synth-rows={self.rows} must be >= 1.")
        if not _finite(self.learning_rate) or self.learning_rate <= 0:
            out.append(f"synth-learning-rate={self.learning_rate} must be a positive number.")
        return out


@dataclass(frozen=True)
class RunConfig:
    """Everything one federated run needs, validated."""

    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secagg: SecAggConfig = field(default_factory=SecAggConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    out_dir: str = ""
    # Names the run across restarts: privacy ledgers and checkpoints are keyed by it.
    run_name: str = ""
    # Simulation only: the virtual hospitals' privacy policies (see SITE_POLICY_KEYS).
    site_policy: str = ""

    def __post_init__(self) -> None:
        """Resolve the automatic learning rate, so `training.learning_rate` is always the rate the
        sites train with. Built once, from the privacy mode it is built with: a later
        `dataclasses.replace` of the privacy mode keeps the rate already resolved."""
        if self.training.learning_rate == AUTO_LEARNING_RATE:
            resolved = dataclasses.replace(self.training, learning_rate=auto_learning_rate(self.privacy))
            object.__setattr__(self, "training", resolved)

    def problems(self) -> list[str]:
        out = (
            self.data.problems()
            + self.training.problems()
            + self.privacy.problems()
            + self.secagg.problems(self.data.num_sites)
            + self.federation.problems()
            + self.evaluation.problems()
            + self.synthesis.problems()
            + site_policy_problems(self.site_policy)
        )
        if self.training.augmentation_multiplicity > 1 and self.privacy.clipping == "ghost" and (
            self.privacy.mode in PRIVACY_MODES and privacy_mode(self.privacy.mode).local_training == DP_SGD
        ):
            out.append(
                f"augmentation-multiplicity={self.training.augmentation_multiplicity} needs clipping='flat': "
                "ghost clipping clips every augmented copy on its own and cannot average an example's copies "
                "before its clipping; set clipping='flat' (exact per-example gradients, as fast on these models)."
            )
        if self.federation.min_sites > self.data.num_sites:
            out.append(
                f"min-sites={self.federation.min_sites} is above num-sites={self.data.num_sites}; "
                "the quorum could never be reached."
            )
        if self.secagg.enabled and self.federation.min_sites < self.secagg.reconstruction_threshold:
            out.append(
                f"min-sites={self.federation.min_sites} is below secagg-threshold="
                f"{self.secagg.reconstruction_threshold}; SecAgg+ cannot finish with fewer sites than its threshold."
            )
        return out

    def validate(self) -> "RunConfig":
        problems = self.problems()
        if problems:
            raise ConfigError(
                "Invalid configuration:\n  - " + "\n  - ".join(problems),
                "change the values above in pyproject.toml [tool.flwr.app.config], "
                "--run-config, or the medfed command's options.",
            )
        return self

    @classmethod
    def from_flower(cls, run_config: Mapping[str, Any]) -> "RunConfig":
        """Build from Flower's flat kebab-case mapping; unknown keys are an error."""
        if not isinstance(run_config, Mapping):
            raise ConfigError(
                f"The run configuration must be a mapping of key = value, not {type(run_config).__name__}.",
                "pass Flower's run_config (a dict of kebab-case keys).",
            )
        values = dict(run_config)
        known = set(_FLAT_KEYS)
        unknown = sorted(repr(k) if not isinstance(k, str) else k for k in values if k not in known)
        if unknown:
            raise ConfigError(
                f"Unknown configuration key(s): {', '.join(unknown)}.",
                f"use only these keys: {', '.join(sorted(known))}.",
            )
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_TYPES}
        top: dict[str, Any] = {}
        errors: list[str] = []
        for key, raw in values.items():
            section, attr, typ = _FLAT_KEYS[key]
            try:
                value = _coerce(raw, typ)
            except (TypeError, ValueError, OverflowError):
                errors.append(f"{key}={_short(raw)} is not a valid {_TYPE_WORDS[typ]}.")
                continue
            (sections[section] if section else top)[attr] = value
        if errors:
            raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(errors), "fix the types above.")
        built = {name: typ(**sections[name]) for name, typ in _SECTION_TYPES.items()}
        return cls(**built, **top).validate()

    def to_flower(self) -> dict[str, Any]:
        """Inverse of `from_flower`: the flat mapping Flower's run_config expects.

        An automatic learning rate is written as 0, as pyproject.toml has it, so the mapping stays
        a set of defaults to override: `RunConfig().to_flower() | {"privacy-mode": "none"}` gets
        the non-private rate, as `--run-config "privacy-mode='none'"` does."""
        out: dict[str, Any] = {}
        for key, (section, attr, _typ) in _FLAT_KEYS.items():
            obj = getattr(self, section) if section else self
            out[key] = getattr(obj, attr)
        if out["learning-rate"] == auto_learning_rate(self.privacy):
            out["learning-rate"] = AUTO_LEARNING_RATE
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The keys of a site's privacy policy: site.toml's [privacy] names (plus require-secagg, which
#: site.toml keeps in [site]). In simulation the researcher plays every hospital, so the run
#: config's `site-policy` carries them as JSON: {"*": {...every site...}, "site-2": {...}}.
#: The policy itself (types, ranges, modes) is client/privacy/policy.py; common/ only knows the names.
SITE_POLICY_KEYS = (
    "mode", "allow-modes", "epsilon", "total-epsilon", "delta", "max-grad-norm", "accountant",
    "min-cohort", "require-secagg", "release-evaluation", "allow-synthesis", "allow-class-balance",
)  # fmt: skip


def site_policy_overrides(text: str) -> dict[str, dict[str, Any]]:
    """The parsed `site-policy` value ("" = no overrides); ValueError says what is wrong."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"site-policy is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError('site-policy must be a JSON object of objects, e.g. {"*": {"total-epsilon": 8}}')
    for site, keys in raw.items():
        unknown = sorted(set(keys) - set(SITE_POLICY_KEYS))
        if unknown:
            raise ValueError(
                f"site-policy[{site!r}] has unknown key(s) {', '.join(unknown)}; use {', '.join(SITE_POLICY_KEYS)}"
            )
    return raw


def site_policy_problems(text: str) -> list[str]:
    try:
        site_policy_overrides(text)
    except ValueError as err:
        return [f"{err}."]
    return []


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _coerce(raw: Any, typ: type) -> Any:
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise ValueError(raw)
    if typ is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise TypeError(raw)
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return int(raw)
    if typ is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise TypeError(raw)
        value = float(raw)
        if not math.isfinite(value):  # NaN/inf never make sense as a setting
            raise ValueError(raw)
        return value
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise TypeError(raw)  # e.g. a list or None must not silently become "[...]" or "None"
    return str(raw)


_TYPE_WORDS: dict[type, str] = {
    bool: "boolean (true or false)",
    int: "whole number",
    float: "finite number",
    str: "text value",
}


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


_SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "privacy": PrivacyConfig,
    "secagg": SecAggConfig,
    "federation": FederationConfig,
    "evaluation": EvaluationConfig,
    "synthesis": SynthesisConfig,
}

# flat kebab-case key -> (section attribute on RunConfig or "" for top level, field, type)
_FLAT_KEYS: dict[str, tuple[str, str, type]] = {
    "dataset": ("data", "dataset", str),
    "data-path": ("data", "data_path", str),
    "data-format": ("data", "data_format", str),
    "num-sites": ("data", "num_sites", int),
    "partition": ("data", "partition", str),
    "alpha": ("data", "alpha", float),
    "seed": ("data", "seed", int),
    "validation-fraction": ("data", "validation_fraction", float),
    "label-column": ("data", "label_column", str),
    "text-column": ("data", "text_column", str),
    "max-tokens": ("data", "max_tokens", int),
    "hash-buckets": ("data", "hash_buckets", int),
    "model": ("training", "model", str),
    "local-epochs": ("training", "local_epochs", int),
    "batch-size": ("training", "batch_size", int),
    "learning-rate": ("training", "learning_rate", float),
    "momentum": ("training", "momentum", float),
    "proximal-mu": ("training", "proximal_mu", float),
    "augmentation": ("training", "augmentation", str),
    "augmentation-multiplicity": ("training", "augmentation_multiplicity", int),
    "learning-rate-schedule": ("training", "learning_rate_schedule", str),
    "class-balance": ("training", "class_balance", str),
    "privacy-mode": ("privacy", "mode", str),
    "epsilon": ("privacy", "epsilon", float),
    "delta": ("privacy", "delta", float),
    "max-grad-norm": ("privacy", "max_grad_norm", float),
    "accountant": ("privacy", "accountant", str),
    "clipping": ("privacy", "clipping", str),
    "client-noise-multiplier": ("privacy", "client_noise_multiplier", float),
    "secagg": ("secagg", "enabled", bool),
    "secagg-num-shares": ("secagg", "num_shares", int),
    "secagg-threshold": ("secagg", "reconstruction_threshold", int),
    "secagg-update-bound": ("secagg", "update_bound", float),
    "secagg-max-weight": ("secagg", "max_weight", float),
    "num-rounds": ("federation", "num_rounds", int),
    "strategy": ("federation", "strategy", str),
    "server-learning-rate": ("federation", "server_learning_rate", float),
    "server-ema": ("federation", "server_ema", float),
    "wait-for-sites": ("federation", "wait_for_sites", int),
    "min-sites": ("federation", "min_sites", int),
    "round-timeout": ("federation", "round_timeout", float),
    "central-eval": ("federation", "central_eval", bool),
    "threshold-rule": ("evaluation", "threshold_rule", str),
    "target-sensitivity": ("evaluation", "target_sensitivity", float),
    "bootstrap-resamples": ("evaluation", "bootstrap_resamples", int),
    "task": ("synthesis", "task", str),
    "synth-rows": ("synthesis", "rows", int),
    "synth-schema": ("synthesis", "schema", str),
    "synth-learning-rate": ("synthesis", "learning_rate", float),
    "out-dir": ("", "out_dir", str),
    "run-name": ("", "run_name", str),
    "site-policy": ("", "site_policy", str),
}
