"""How good a synthetic table is, measured against the real data it replaces.

* utility: TSTR (a logistic regression trained on synthetic rows, tested on each site's real
  test split) next to TRTR (the same classifier trained on the sites' pooled real training rows);
  the headline is the mean of the per-hospital accuracies (FLamby's Fed-Heart-Disease metric);
* fidelity: per-column marginal distance (Kolmogorov-Smirnov statistic for continuous columns,
  total variation distance for categorical ones) and the largest / mean absolute difference of
  pairwise Pearson correlations;
* memorisation: each synthetic row's distance to its nearest real training row, against the
  same distance for real *test* rows (rows the generator never saw through its discriminator);
  a synthetic median far below the test median would mean copied patients.

Only the simulation (where the researcher holds every site's data) can compute it: a deployed
server never has the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.synthesis.schema import TableSchema


@dataclass
class QualityReport:
    tstr: dict[str, float]  # site -> accuracy of the synthetic-trained classifier on its real test split
    trtr: dict[str, float]
    tstr_auc: dict[str, float | None]
    trtr_auc: dict[str, float | None]
    marginals: dict[str, float]  # column -> KS (continuous) or TVD (categorical)
    correlation_max_diff: float
    correlation_mean_diff: float
    dcr_synthetic_median: float  # distance to closest real training record
    dcr_test_median: float
    dcr_synthetic_5th: float
    dcr_test_5th: float
    extra: dict = field(default_factory=dict)

    @property
    def tstr_mean(self) -> float:
        return float(np.mean(list(self.tstr.values())))

    @property
    def trtr_mean(self) -> float:
        return float(np.mean(list(self.trtr.values())))

    def to_dict(self) -> dict:
        return {
            "utility": {"tstr_mean_accuracy": self.tstr_mean, "trtr_mean_accuracy": self.trtr_mean,
                        "tstr_accuracy": self.tstr, "trtr_accuracy": self.trtr,
                        "tstr_auc": self.tstr_auc, "trtr_auc": self.trtr_auc},
            "fidelity": {"marginal_distance": self.marginals, "correlation_max_abs_diff": self.correlation_max_diff,
                         "correlation_mean_abs_diff": self.correlation_mean_diff},
            "memorisation": {"dcr_synthetic_median": self.dcr_synthetic_median, "dcr_test_median": self.dcr_test_median,
                             "dcr_synthetic_5th_percentile": self.dcr_synthetic_5th,
                             "dcr_test_5th_percentile": self.dcr_test_5th},
            **self.extra,
        }


def fit_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """Standardised logistic regression (the FLamby model for this dataset)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)).fit(x, y)


def per_site_scores(clf, tests: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    from sklearn.metrics import roc_auc_score

    acc, auc = {}, {}
    for name, (x, y) in tests.items():
        acc[name] = float(np.mean(clf.predict(x) == y))
        auc[name] = float(roc_auc_score(y, clf.predict_proba(x)[:, 1])) if len(np.unique(y)) == 2 else None
    return acc, auc


def _scaled(schema: TableSchema, x: np.ndarray) -> np.ndarray:
    """Rows on a common scale for distances: continuous columns by their declared range,
    categorical ones as 0/1 per category (so a differing category counts 1)."""
    parts = []
    for j, c in enumerate(schema.columns):
        if c.kind == "continuous":
            parts.append(((x[:, j] - c.lo) / (c.hi - c.lo))[:, None])
        else:
            parts.append((x[:, j][:, None] == np.asarray(c.values)[None, :]).astype(float) / np.sqrt(2))
    return np.concatenate(parts, axis=1)


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(b).query(a, k=1)[0]


def assess(
    schema: TableSchema,
    synthetic: tuple[np.ndarray, np.ndarray],
    train: dict[str, tuple[np.ndarray, np.ndarray]],
    test: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
) -> QualityReport:
    from scipy.stats import ks_2samp

    xs, ys = synthetic
    xr = np.concatenate([v[0] for v in train.values()])
    yr = np.concatenate([v[1] for v in train.values()])
    xt = np.concatenate([v[0] for v in test.values()])
    tstr, tstr_auc = per_site_scores(fit_classifier(xs, ys, seed), test)
    trtr, trtr_auc = per_site_scores(fit_classifier(xr, yr, seed), test)
    marginals: dict[str, float] = {}
    for j, c in enumerate(schema.columns):
        if c.kind == "continuous":
            marginals[c.name] = float(ks_2samp(xs[:, j], xr[:, j]).statistic)
        else:
            p = np.array([np.mean(xs[:, j] == v) for v in c.values])
            q = np.array([np.mean(xr[:, j] == v) for v in c.values])
            marginals[c.name] = float(0.5 * np.abs(p - q).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        cs = np.nan_to_num(np.corrcoef(np.column_stack([xs, ys]), rowvar=False))
        cr = np.nan_to_num(np.corrcoef(np.column_stack([xr, yr]), rowvar=False))
    diff = np.abs(cs - cr)[np.triu_indices(cs.shape[0], k=1)]
    ref = _scaled(schema, xr)
    d_syn, d_test = _nearest(_scaled(schema, xs), ref), _nearest(_scaled(schema, xt), ref)
    return QualityReport(
        tstr=tstr, trtr=trtr, tstr_auc=tstr_auc, trtr_auc=trtr_auc, marginals=marginals,
        correlation_max_diff=float(diff.max()), correlation_mean_diff=float(diff.mean()),
        dcr_synthetic_median=float(np.median(d_syn)), dcr_test_median=float(np.median(d_test)),
        dcr_synthetic_5th=float(np.percentile(d_syn, 5)), dcr_test_5th=float(np.percentile(d_test, 5)),
    )  # fmt: skip
