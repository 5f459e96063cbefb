"""The operating point of a binary model: the decision threshold, chosen on validation data only.

A model that ranks well (high AUC) can still be unusable at the arg-max threshold of 0.5: a
privately trained model is often overconfident and calls most normal X-rays abnormal. The
threshold is therefore chosen by a configurable rule (`threshold-rule`) on validation data:

* the operator's own validation split when the dataset has one (`central_val`): exact, over
  every distinct validation score;
* otherwise the sites' validation splits: each site counts, on the fixed grid `THRESHOLD_GRID`
  of positive-class probabilities, its true/false positives and negatives (`grid_counts`); the
  server sums the counts of the sites that release them and applies the rule to the sum.

Both paths end in `choose_threshold`, which sees thresholds and (sensitivity, specificity)
pairs only, never a label or a score of any test split. Multiclass models keep the arg-max.

Thresholds apply to the *calibrated* probability (after temperature scaling, see
`common/calibration.py`). With two classes, temperature T maps the raw probability p to
sigmoid(logit(p) / T), a monotone map, so the same decisions are expressed on either scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_curve

DEFAULT_THRESHOLD = 0.5

#: Positive-class probabilities the sites count at: evenly spaced in log-odds from -8 to 8
#: (probabilities 0.0003 .. 0.9997), dense where an overconfident model puts its scores. 0.5 is
#: on the grid (log-odds 0).
THRESHOLD_GRID = 1.0 / (1.0 + np.exp(-np.linspace(-8.0, 8.0, 161)))


@dataclass(frozen=True)
class OperatingPoint:
    """What the global model's decisions depend on; saved with the model (global_model.json).

    threshold: on the calibrated positive-class probability; None for a multiclass model (arg-max).
    source: "central validation" (the operator's split), "site validation" (sites' summed
    counts), or "default" (no validation data available: 0.5, with `note` saying why).
    """

    rule: str
    threshold: float | None
    temperature: float = 1.0
    source: str = "default"
    validation_n: int = 0
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None
    target_sensitivity: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def grid_counts(y: np.ndarray, positive_probs: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Confusion counts at every grid threshold: an int array (len(grid), 4) of tp, fp, tn, fn.

    "Positive" means p >= threshold. This is what a site releases about its validation split
    in the federated path (docs/PRIVACY.md): counts, never a score or a label.
    """
    y = np.asarray(y).reshape(-1).astype(bool)
    p = np.asarray(positive_probs, dtype=np.float64).reshape(-1)
    called = p[None, :] >= np.asarray(grid)[:, None]  # (G, n)
    tp = (called & y).sum(axis=1)
    fp = (called & ~y).sum(axis=1)
    return np.stack([tp, fp, (~y).sum() - fp, y.sum() - tp], axis=1).astype(np.int64)


def rates_from_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sensitivity, specificity) per grid row of summed (tp, fp, tn, fn) counts."""
    c = np.asarray(counts, dtype=np.float64)
    tp, fp, tn, fn = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn), tn / (tn + fp)


def choose_threshold(
    thresholds: np.ndarray, sensitivity: np.ndarray, specificity: np.ndarray, *, rule: str, target_sensitivity: float
) -> tuple[float, float, float]:
    """(threshold, its sensitivity, its specificity) under `rule`, from validation rates only.

    youden: the largest sensitivity + specificity - 1 (ties: the threshold nearest 0.5);
    target-sensitivity: the most specific threshold whose sensitivity reaches the target (if
    none does, the most sensitive one); fixed: 0.5.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    sens = np.asarray(sensitivity, dtype=np.float64)
    spec = np.asarray(specificity, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(sens) & np.isfinite(spec) & (t > 0) & (t < 1)
    if rule == "fixed" or not ok.any():
        i = int(np.argmin(np.abs(t - DEFAULT_THRESHOLD))) if ok.any() else None
        if i is None:
            return DEFAULT_THRESHOLD, float("nan"), float("nan")
        return DEFAULT_THRESHOLD, float(sens[i]), float(spec[i])
    t, sens, spec = t[ok], sens[ok], spec[ok]
    if rule == "youden":
        j = sens + spec - 1
        best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
        i = int(best[np.argmin(np.abs(t[best] - DEFAULT_THRESHOLD))])
    elif rule == "target-sensitivity":
        reach = np.flatnonzero(sens >= target_sensitivity - 1e-12)
        if reach.size:
            top = reach[np.isclose(spec[reach], spec[reach].max(), rtol=0, atol=1e-12)]
            i = int(top[np.argmax(t[top])])
        else:
            i = int(np.argmax(sens))
    else:
        raise ValueError(f"unknown threshold rule {rule!r}")
    return float(t[i]), float(sens[i]), float(spec[i])


def exact_rates(y: np.ndarray, positive_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, sensitivity, specificity) at every distinct score of one validation split."""
    fpr, tpr, thr = roc_curve(np.asarray(y).reshape(-1), np.asarray(positive_probs).reshape(-1), drop_intermediate=False)
    return thr, tpr, 1.0 - fpr


def calibrated_threshold(raw_threshold: float, temperature: float) -> float:
    """A threshold on the raw positive-class probability, expressed on the calibrated scale."""
    p = min(max(raw_threshold, 1e-12), 1 - 1e-12)
    return float(1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature)))


# Keys of the evaluate instruction's config (server -> site). A site counts its validation
# split when the phase is "validation", else scores its test split at the threshold/temperature.
EVAL_PHASE_KEY = "medfed-eval-phase"
VALIDATION_PHASE = "validation"
THRESHOLD_KEY = "medfed-threshold"
TEMPERATURE_KEY = "medfed-temperature"
# Keys of a site's validation reply (JSON text: Flower metrics hold scalars).
VAL_COUNTS_KEY = "val_grid_counts"
VAL_NLL_KEY = "val_nll_sums"


def evaluate_config(op: OperatingPoint) -> dict[str, float]:
    """What the sites need to score their test split at `op` (no threshold: arg-max)."""
    out = {TEMPERATURE_KEY: float(op.temperature)}
    if op.threshold is not None:
        out[THRESHOLD_KEY] = float(op.threshold)
    return out
