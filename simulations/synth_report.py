"""The synthetic data's quality report (quality_report.html), in the style of the run report.

Written by `medfed synth` after the federation, from common/synthesis/quality.py's numbers (also
saved as quality.json) and the data card: utility (TSTR next to TRTR per hospital), fidelity
(marginals, correlations), memorisation (distance to the closest real record) and privacy spent.
Images (common/synthesis/image_quality.py) get the same sections, with a per-class sample grid and
a real-trained classifier's view of the synthetic images as fidelity.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from common.synthesis.quality import QualityReport
from common.synthesis.schema import TableSchema
from server.plots import plt
from server.report import _fmt, _img


def plot_marginals(schema: TableSchema, real: np.ndarray, synthetic: np.ndarray, path: Path) -> Path:
    cols = len(schema.columns)
    fig, axes = plt.subplots(2, (cols + 1) // 2, figsize=(3 * ((cols + 1) // 2), 5.5))
    for ax, (j, c) in zip(np.ravel(axes), enumerate(schema.columns)):
        if c.kind == "continuous":
            bins = np.linspace(c.lo, c.hi, 25)
            ax.hist(real[:, j], bins=bins, density=True, alpha=0.5, label="real (train)")
            ax.hist(synthetic[:, j], bins=bins, density=True, alpha=0.5, label="synthetic")
        else:
            pos = np.arange(len(c.values))
            ax.bar(pos - 0.2, [np.mean(real[:, j] == v) for v in c.values], 0.4, label="real (train)")
            ax.bar(pos + 0.2, [np.mean(synthetic[:, j] == v) for v in c.values], 0.4, label="synthetic")
            ax.set_xticks(pos, [f"{v:g}" for v in c.values])
        ax.set_title(c.name, fontsize=9)
    np.ravel(axes)[0].legend(fontsize=7)
    for ax in np.ravel(axes)[cols:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_quality_report(out_dir: Path, schema: TableSchema, quality: QualityReport, card: dict,
                         real_train: np.ndarray, synthetic: np.ndarray) -> Path:
    marg = plot_marginals(schema, real_train, synthetic, out_dir / "synthetic_marginals.png")
    site_rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{_fmt(quality.tstr[s])}</td><td>{_fmt(quality.trtr[s])}</td>"
        f"<td>{_fmt(quality.tstr_auc[s])}</td><td>{_fmt(quality.trtr_auc[s])}</td></tr>"
        for s in quality.tstr
    )
    marg_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in quality.marginals.items())
    copied = quality.dcr_synthetic_5th < 0.5 * quality.dcr_test_5th
    body = f"""<h1>Synthetic data report</h1>
<p class="big">{card['rows']} synthetic rows. A classifier trained on them reaches a mean hospital accuracy of
<b>{_fmt(quality.tstr_mean)}</b> on the hospitals' real test patients (trained on the real rows: {_fmt(quality.trtr_mean)}).</p>
{_what_was_run(card)}
<h2>Utility: train on synthetic, test on real (TSTR) vs train on real (TRTR)</h2>
<p>Logistic regression; each hospital's own real test split. TRTR pools the hospitals' real training rows
(what no hospital can do without sharing data): the ceiling.</p>
<table><tr><th>Hospital</th><th>TSTR accuracy</th><th>TRTR accuracy</th><th>TSTR AUC</th><th>TRTR AUC</th></tr>
{site_rows}</table>
<h2>Fidelity</h2>
<p>Per column: Kolmogorov-Smirnov statistic (continuous) or total variation distance (categorical), synthetic vs
the real training rows (0 = identical). Pairwise correlations (label included): largest absolute difference
{_fmt(quality.correlation_max_diff)}, mean {_fmt(quality.correlation_mean_diff)}.</p>
<table><tr><th>Column</th><th>Distance</th></tr>{marg_rows}</table>
{_img(marg)}
<h2>Memorisation</h2>
<p class="{'warn' if copied else ''}">Distance to the closest real training row (schema-scaled): synthetic rows median
{_fmt(quality.dcr_synthetic_median)} (5th percentile {_fmt(quality.dcr_synthetic_5th)}); real test rows, which the model
never saw, median {_fmt(quality.dcr_test_median)} (5th percentile {_fmt(quality.dcr_test_5th)}).
{'Synthetic rows sit much closer to training rows than unseen patients do: inspect before sharing.' if copied else
 'Synthetic rows are no closer to the training patients than unseen patients are.'}</p>
"""
    return _write_page(out_dir, "data", body, card)


def plot_sample_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
                     per_class: int = 12, title: str = "synthetic") -> Path:
    """One row per class: the first `per_class` images of that class (grey, pixels in [0, 1])."""
    k = len(class_names)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.9, k * 1.05), squeeze=False)
    for c in range(k):
        idx = np.flatnonzero(labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(idx):
                ax.imshow(images[idx[j]].reshape(images.shape[-2:]), cmap="gray", vmin=0, vmax=1)
        axes[c, 0].set_title(f"{title}: {class_names[c]}", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_image_quality_report(out_dir: Path, quality, card: dict, real_train: tuple[np.ndarray, np.ndarray],
                               synthetic: tuple[np.ndarray, np.ndarray], class_names: list[str]) -> Path:
    """quality_report.html for synthetic images (`quality`: common.synthesis.image_quality's report)."""
    grid = plot_sample_grid(synthetic[0], synthetic[1], class_names, out_dir / "synthetic_samples.png")
    real_grid = plot_sample_grid(real_train[0], real_train[1], class_names, out_dir / "real_samples.png",
                                 title="real (train)")
    site_rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{_fmt(quality.tstr_site_auc[s])}</td><td>{_fmt(quality.trtr_site_auc[s])}</td></tr>"
        for s in quality.tstr_site_auc
    )
    copied = quality.dcr_synthetic_5th < 0.5 * quality.dcr_test_5th
    body = f"""<h1>Synthetic images report</h1>
<p class="big">{card['rows']} synthetic images. A classifier trained on them reaches an AUC of
<b>{_fmt(quality.tstr_auc)}</b> on the {html.escape(quality.evaluated_on)} (trained on the real images: {_fmt(quality.trtr_auc)}).</p>
{_what_was_run(card)}
<h2>Samples</h2>
<p>One row per class, in the order generated (not selected). Real training images below, for comparison
(this page is for the researcher who holds the data; it is not part of the release).</p>
{_img(grid)}
{_img(real_grid)}
<h2>Utility: train on synthetic, test on real (TSTR) vs train on real (TRTR)</h2>
<p>The same small CNN and fixed recipe for both. TRTR pools the hospitals' real training images (what no
hospital can do without sharing data): the ceiling.</p>
<table><tr><th>Evaluated on</th><th>TSTR AUC</th><th>TRTR AUC</th><th>TSTR accuracy</th><th>TRTR accuracy</th></tr>
<tr><td>{html.escape(quality.evaluated_on)}</td><td>{_fmt(quality.tstr_auc)}</td><td>{_fmt(quality.trtr_auc)}</td>
<td>{_fmt(quality.tstr_accuracy)}</td><td>{_fmt(quality.trtr_accuracy)}</td></tr></table>
<table><tr><th>Hospital (own test split)</th><th>TSTR AUC</th><th>TRTR AUC</th></tr>{site_rows}</table>
<h2>Fidelity: does a real-trained classifier see the intended class?</h2>
<p>The TRTR classifier on the synthetic images, against the class each image was generated for: AUC
{_fmt(quality.real_classifier_auc_on_synthetic)}, accuracy {_fmt(quality.real_classifier_accuracy_on_synthetic)}
(0.5 AUC: the classes are not told apart).</p>
<h2>Memorisation</h2>
<p class="{'warn' if copied else ''}">Distance to the closest real training image (root mean squared pixel difference,
pixels in [0, 1]): synthetic images median {_fmt(quality.dcr_synthetic_median)} (5th percentile
{_fmt(quality.dcr_synthetic_5th)}); real test images, which the model never saw, median {_fmt(quality.dcr_test_median)}
(5th percentile {_fmt(quality.dcr_test_5th)}).
{'Synthetic images sit much closer to training images than unseen images do: inspect before sharing.' if copied else
 'Synthetic images are no closer to the training images than unseen images are.'}</p>
"""
    return _write_page(out_dir, "images", body, card)


def _what_was_run(card: dict) -> str:
    """The data card's provenance as a table: source sites, model, privacy, seed and code."""
    return f"""<h2>What was run</h2>
<table>
<tr><th>Source</th><td>{html.escape(str(card['source']['dataset']))}: {html.escape(', '.join(card['source']['sites']))}</td></tr>
<tr><th>Model</th><td>{html.escape(str(card['model']['name']))}, {card['model']['rounds']} federated rounds</td></tr>
<tr><th>Privacy</th><td>{html.escape(card['privacy']['mode'])}: {html.escape(card['privacy']['guarantee'])}</td></tr>
<tr><th>Seed / code</th><td>{card['seed']} / {html.escape(str(card['code_version']))}</td></tr>
</table>"""


def _write_page(out_dir: Path, kind: str, body: str, card: dict) -> Path:
    """quality_report.html: the shared page style, `body`, and the privacy spent per hospital."""
    priv_rows = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{_fmt(p.get('epsilon'))}</td><td>{_fmt(p.get('delta'))}</td>"
        f"<td>{_fmt(p.get('budget'))}</td><td>{html.escape(str(p.get('status')))}</td></tr>"
        for s, p in card["privacy"]["per_site"].items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medfed synthetic {kind} report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f0f0; }} .warn {{ color: #a00; font-weight: bold; }} img {{ max-width: 100%; }}
.big {{ font-size: 1.4em; }}
</style></head><body>
{body}
<h2>Privacy spent</h2>
<table><tr><th>Hospital</th><th>Epsilon</th><th>Delta</th><th>Budget</th><th>Status</th></tr>{priv_rows}</table>
</body></html>
"""
    path = out_dir / "quality_report.html"
    path.write_text(page, encoding="utf-8")
    return path
