"""How good synthetic images are, measured against the real images they replace.

* utility: TSTR AUC (a small CNN trained on the synthetic images, tested on the dataset's
  official test split when it has one, else on the sites' pooled test splits) next to TRTR (the
  same CNN, same recipe, trained on the sites' pooled real training images), plus each site's
  own test split;
* fidelity, classifier-based: the real-trained (TRTR) CNN's AUC and accuracy on the synthetic
  images against the class each was generated for (does a pneumonia image look like pneumonia
  to a model that learned from real X-rays?);
* memorisation: each synthetic image's distance to its nearest real training image (root mean
  squared pixel difference, pixels in [0, 1]), against the same distance for real test images
  (images the discriminator never saw); a synthetic median far below the test median would mean
  copied X-rays.

Every classifier is trained with a fixed recipe and seed (no tuning on the test split). Only the
simulation (where the researcher holds every site's data) can compute this: a deployed server
never has the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from common.models import build_model

EPOCHS = 5
BATCH = 64
LEARNING_RATE = 1e-3
WIDTH = 16  # the CNN's width: small, so the report stays cheap on a CPU


@dataclass
class ImageQualityReport:
    tstr_auc: float  # on the evaluation split (official test when the dataset has one)
    trtr_auc: float
    tstr_accuracy: float
    trtr_accuracy: float
    evaluated_on: str  # "official test split" or "the sites' test splits (pooled)"
    tstr_site_auc: dict[str, float | None]
    trtr_site_auc: dict[str, float | None]
    real_classifier_auc_on_synthetic: float | None
    real_classifier_accuracy_on_synthetic: float
    dcr_synthetic_median: float
    dcr_test_median: float
    dcr_synthetic_5th: float
    dcr_test_5th: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "utility": {"evaluated_on": self.evaluated_on, "tstr_auc": self.tstr_auc, "trtr_auc": self.trtr_auc,
                        "tstr_accuracy": self.tstr_accuracy, "trtr_accuracy": self.trtr_accuracy,
                        "tstr_site_auc": self.tstr_site_auc, "trtr_site_auc": self.trtr_site_auc},
            "fidelity": {"real_classifier_auc_on_synthetic": self.real_classifier_auc_on_synthetic,
                         "real_classifier_accuracy_on_synthetic": self.real_classifier_accuracy_on_synthetic},
            "memorisation": {"dcr_synthetic_median": self.dcr_synthetic_median, "dcr_test_median": self.dcr_test_median,
                             "dcr_synthetic_5th_percentile": self.dcr_synthetic_5th,
                             "dcr_test_5th_percentile": self.dcr_test_5th},
            **self.extra,
        }


def fit_cnn(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0) -> nn.Module:
    """medfed's image CNN trained on (x in [0, 1], (n, 1, H, W); y) with one fixed recipe."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model("cnn", tuple(x.shape[1:]), num_classes, width=WIDTH)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    xt, yt = torch.from_numpy(_scaled(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), BATCH):
            idx = order[i : i + BATCH]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


def _scaled(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32) * 2.0 - 1.0  # the GAN's public [-1, 1] map


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(_scaled(x))
    return torch.cat([torch.softmax(model(xt[i : i + 512]), dim=1) for i in range(0, len(xt), 512)]).numpy()


def scores(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float | None, float]:
    """(AUC of the last class's probability, or None without both classes / for > 2 classes; accuracy)."""
    from sklearn.metrics import roc_auc_score

    p = predict_proba(model, x)
    acc = float(np.mean(p.argmax(axis=1) == y))
    auc = float(roc_auc_score(y, p[:, 1])) if p.shape[1] == 2 and len(np.unique(y)) == 2 else None
    return auc, acc


def nearest_distance(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """For each image of `a`, the RMS pixel distance to its nearest image in `b`."""
    bt = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32).reshape(len(b), -1))
    at = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1))
    out = [torch.cdist(at[i : i + chunk], bt).min(dim=1).values for i in range(0, len(at), chunk)]
    return (torch.cat(out) / np.sqrt(bt.shape[1])).numpy()


def assess_images(
    synthetic: tuple[np.ndarray, np.ndarray],
    train: dict[str, tuple[np.ndarray, np.ndarray]],
    test: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    central_test: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> ImageQualityReport:
    """`synthetic`, `train`, `test`, `central_test`: (images in [0, 1] (n, 1, H, W), labels)."""
    xs, ys = synthetic
    xr = np.concatenate([v[0] for v in train.values()])
    yr = np.concatenate([v[1] for v in train.values()])
    if central_test is not None:
        xe, ye, where = central_test[0], central_test[1], "official test split"
    else:
        xe = np.concatenate([v[0] for v in test.values()])
        ye = np.concatenate([v[1] for v in test.values()])
        where = "the sites' test splits (pooled)"
    tstr_model = fit_cnn(xs, ys, num_classes, seed)
    trtr_model = fit_cnn(xr, yr, num_classes, seed)
    tstr_auc, tstr_acc = scores(tstr_model, xe, ye)
    trtr_auc, trtr_acc = scores(trtr_model, xe, ye)
    real_on_syn_auc, real_on_syn_acc = scores(trtr_model, xs, ys)
    d_syn, d_test = nearest_distance(xs, xr), nearest_distance(xe, xr)
    return ImageQualityReport(
        tstr_auc=float(tstr_auc) if tstr_auc is not None else float("nan"),
        trtr_auc=float(trtr_auc) if trtr_auc is not None else float("nan"),
        tstr_accuracy=tstr_acc, trtr_accuracy=trtr_acc, evaluated_on=where,
        tstr_site_auc={n: scores(tstr_model, x, y)[0] for n, (x, y) in test.items()},
        trtr_site_auc={n: scores(trtr_model, x, y)[0] for n, (x, y) in test.items()},
        real_classifier_auc_on_synthetic=real_on_syn_auc, real_classifier_accuracy_on_synthetic=real_on_syn_acc,
        dcr_synthetic_median=float(np.median(d_syn)), dcr_test_median=float(np.median(d_test)),
        dcr_synthetic_5th=float(np.percentile(d_syn, 5)), dcr_test_5th=float(np.percentile(d_test, 5)),
    )
