"""Calibration of the global model: temperature scaling, Brier score, ECE, reliability bins.

Temperature scaling (Guo et al. 2017) divides the logits by one number T > 0 fitted on
validation data by minimising the negative log-likelihood. It never changes which class ranks
first, so AUC and arg-max accuracy stay as they are; it makes the probabilities honest. A
model trained with DP-SGD for many rounds is typically overconfident (T > 1).

* Central path: `fit_temperature` (L-BFGS-B on log T) on the operator's validation logits.
* Federated path: each site returns its validation NLL summed at every T of `TEMPERATURE_GRID`
  (`nll_on_grid`); the server sums them and takes the smallest (`temperature_from_grid`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

#: Temperatures the sites evaluate their validation NLL at: 2^(k/8) for k = -16..32 (0.25..16).
TEMPERATURE_GRID = 2.0 ** (np.arange(-16, 33) / 8.0)
ECE_BINS = 10


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels `y` under softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    yy = np.asarray(y).reshape(-1).astype(np.int64)
    if yy.size == 0:
        return float("nan")
    return float(-log_softmax(z, axis=1)[np.arange(yy.size), yy].mean())


def nll_on_grid(logits: np.ndarray, y: np.ndarray, grid: np.ndarray = TEMPERATURE_GRID) -> np.ndarray:
    """Summed (not mean) NLL at every grid temperature: what a site releases, so sums add up."""
    yy = np.asarray(y).reshape(-1)
    return np.array([nll(logits, yy, t) * yy.size for t in grid]) if yy.size else np.zeros(len(grid))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] minimising validation NLL (1.0 when there is nothing to fit on)."""
    z = np.asarray(logits, dtype=np.float64)
    yy = np.asarray(y).reshape(-1).astype(np.int64)
    if yy.size == 0 or not np.all(np.isfinite(z)):
        return 1.0
    res = minimize(lambda v: nll(z, yy, float(np.exp(v[0]))), x0=np.array([0.0]), method="L-BFGS-B",
                   bounds=[(np.log(0.05), np.log(20.0))])
    t = float(np.exp(res.x[0]))
    return t if nll(z, yy, t) <= nll(z, yy, 1.0) else 1.0


def temperature_from_grid(summed_nll: np.ndarray, grid: np.ndarray = TEMPERATURE_GRID) -> float:
    """The grid temperature with the smallest summed validation NLL."""
    s = np.asarray(summed_nll, dtype=np.float64)
    return float(grid[int(np.nanargmin(s))]) if np.isfinite(s).any() else 1.0


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def brier(probs: np.ndarray, y: np.ndarray) -> float | None:
    """Brier score: binary, mean (p(positive) - y)^2; multiclass, mean squared distance to one-hot."""
    p = np.asarray(probs, dtype=np.float64)
    yy = np.asarray(y).reshape(-1).astype(np.int64)
    if yy.size == 0:
        return None
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - yy) ** 2))
    onehot = np.eye(p.shape[1])[yy]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per confidence bin: count, mean confidence and accuracy of the top-class prediction
    (binary: of the positive-class probability against the positive rate, the usual diagram)."""
    p = np.asarray(probs, dtype=np.float64)
    yy = np.asarray(y).reshape(-1).astype(np.int64)
    if p.shape[1] == 2:
        conf, hit = p[:, 1], (yy == 1).astype(float)
    else:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == yy).astype(float)
    which = np.clip((conf * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        frac = np.bincount(which, hit, minlength=bins) / count
    clean = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
    return {"count": count.astype(int).tolist(), "confidence": clean(mean_conf), "observed": clean(frac)}


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error over `reliability_bins`: the count-weighted mean |observed - confidence|."""
    if np.asarray(y).size == 0:
        return None
    r = reliability_bins(probs, y, bins)
    n = sum(r["count"])
    gap = sum(c * abs(o - m) for c, o, m in zip(r["count"], r["observed"], r["confidence"]) if c)
    return float(gap / n)


def calibration_summary(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, float | None]:
    """Brier score, ECE and NLL before (T = 1) and after temperature scaling, on one split."""
    before, after = probabilities(logits), probabilities(logits, temperature)
    return {
        "temperature": float(temperature),
        "brier_before": brier(before, y),
        "brier_after": brier(after, y),
        "ece_before": ece(before, y),
        "ece_after": ece(after, y),
        "nll_before": nll(logits, y),
        "nll_after": nll(logits, y, temperature),
    }
