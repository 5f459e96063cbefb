"""A self-contained HTML report a clinician can read (and a phone can show).

Written once, when a run finishes (server/outputs.py), from the content of its metrics.json and
privacy.json (plus the model's metadata), so every number the report shows can be checked
against those files. Order: the headline in words with 95 % intervals, the operating point and
how it was chosen, the confusion matrix, ROC and calibration, each hospital with intervals, a
model card (intended use, data, privacy spent, limitations, what was not validated; in the
spirit of TRIPOD+AI), then the technical detail (learning curves, rounds, reproducibility).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from common.privacy import recorded_mode
from server.plots import PLOTS, write_plots

__all__ = ["PLOTS", "write_plots", "write_report"]

RULE_WORDS = {
    "youden": "Youden's J: the threshold that maximises sensitivity + specificity on the validation data",
    "target-sensitivity": "the most specific threshold that still reaches the target sensitivity on the validation data",
    "fixed": "fixed at 0.5 (no threshold chosen: the run asked for threshold-rule = fixed)",
}

CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 0 auto;
       padding: 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin: .3em 0; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.ci { color: #555; font-size: .85em; }
.warn { color: #a00; font-weight: bold; }
.headline { font-size: 1.25em; background: #eef5fb; border-left: 5px solid #2b6cb0; padding: .7em 1em; margin: 1em 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1em; align-items: start; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .4em .9em; }
img { max-width: 100%; height: auto; }
.cm td { text-align: center; min-width: 6em; } .cm .ok { background: #e6f4ea; } .cm .bad { background: #fdecea; }
ul { padding-left: 1.3em; }
table.sites .ci { display: block; }
.hint { display: none; color: #555; font-size: .85em; }
@media (max-width: 600px) {
  body { padding: .6em; font-size: 15px; } h1 { font-size: 1.3em; } .headline { font-size: 1.05em; }
  td, th { padding: 3px 5px; } .cards { grid-template-columns: 1fr; } td.num .ci { display: block; }
  .hint { display: block; }
}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _ci_pct(ci: list | None) -> str:
    return f"[{100 * ci[0]:.0f}-{100 * ci[1]:.0f}]" if ci else ""


def _with_ci(v: Any, ci: list | None) -> str:
    """A value and its interval in a table cell: 0.912 [0.88-0.94]."""
    if v is None:
        return "n/a"
    text = _fmt(v)
    return f'{text} <span class="ci">[{ci[0]:.2f}-{ci[1]:.2f}]</span>' if ci else text


def _headline(g: dict, ci: dict, classes: list[str], n: Any, where: str, point: dict) -> str:
    if len(classes) == 2 and g.get("sensitivity") is not None and g.get("specificity") is not None:
        neg, pos = (html.escape(c) for c in classes)
        negatives = f"cases without {neg[3:]}" if neg.lower().startswith("no ") else f"{neg} cases"
        thr = point.get("threshold")
        thr_text = f" (threshold {thr:.2f})" if isinstance(thr, float) else ""
        auc = g.get("auc")
        auc_ci = f" {_ci(ci.get('auc'))}" if ci.get("auc") else ""
        auc_text = f" Its ranking of {pos} cases above {negatives} has an AUC of {auc:.2f}{auc_ci}." if auc is not None else ""
        return (
            f"At the chosen threshold{thr_text} the model finds <b>{_pct(g['sensitivity'])}</b> "
            f"{_ci_pct(ci.get('sensitivity'))} of {pos} cases and clears <b>{_pct(g['specificity'])}</b> "
            f"{_ci_pct(ci.get('specificity'))} of {negatives}, on {_fmt(n)} {where}.{auc_text}"
        )
    acc, bal = g.get("accuracy"), g.get("balanced_accuracy")
    return (
        f"The model names the right class for <b>{_pct(acc)}</b> {_ci_pct(ci.get('accuracy'))} of {_fmt(n)} {where} "
        f"(balanced over the {len(classes)} classes: {_pct(bal)} {_ci_pct(ci.get('balanced_accuracy'))}; "
        f"macro AUC {_fmt(g.get('auc'))})."
    )


def _ci(ci: list | None) -> str:
    return f"[{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""


def _operating_point(point: dict, cfg: dict) -> str:
    if not point:
        return "<p>No operating point was recorded.</p>"
    rule = str(point.get("rule"))
    if point.get("threshold") is None:
        how = "The model has more than two classes: it predicts the most probable class (no threshold)."
    else:
        how = html.escape(RULE_WORDS.get(rule, rule))
        if rule == "target-sensitivity":
            how += f" (target {_pct(point.get('target_sensitivity'))})"
    source = str(point.get("source"))
    where = {
        "central validation": "the operator's own validation split, held apart from training and from the test split",
        "default": f"no validation data: {point.get('note')}",
    }.get(source, f"the hospitals' validation splits ({source.removeprefix('site validation').strip(' ()') or 'all'}): "
                  "each hospital counted its validation patients on a fixed grid of thresholds and the server "
                  "chose on the sum")
    rows = [
        ("Decision threshold", f"{point['threshold']:.3f} on the calibrated probability of "
                               f"{html.escape(str((cfg.get('class_names') or ['', 'class 1'])[-1]))}"
         if point.get("threshold") is not None else "arg-max"),
        ("How it was chosen", how),
        ("Chosen on", html.escape(where)),
        ("Validation patients", _fmt(point.get("validation_n"))),
        ("Validation sensitivity / specificity", f"{_fmt(point.get('validation_sensitivity'))} / "
                                                 f"{_fmt(point.get('validation_specificity'))}"),
        ("Temperature (calibration)", f"{point.get('temperature', 1.0):.3f}: the model's logits are divided by it "
                                      "before the softmax (fitted on the same validation data)"),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="scroll"><table>{body}</table></div><p>Test data never influenced the threshold or the temperature.</p>'


def _summed_site_confusion(final: dict) -> list | None:
    """The hospitals' released confusion matrices, summed (the federated path's pooled matrix)."""
    mats = [m["confusion"] for m in final.get("sites", {}).values() if isinstance(m.get("confusion"), list)]
    if not mats:
        return None
    k = len(mats[0])
    return [[sum(mat[i][j] for mat in mats) for j in range(k)] for i in range(k)]


def _confusion(cm: list | None, classes: list[str], summed: list | None = None) -> str:
    note = ""
    if not cm and summed:
        cm, note = summed, "<p>No central test split: the hospitals' own test confusion matrices, summed.</p>"
    if not cm:
        return "<p>No central test split, and no hospital released its confusion matrix.</p>"
    head = "".join(f"<th>predicted {html.escape(c)}</th>" for c in classes)
    rows = "".join(
        f"<tr><th>actually {html.escape(classes[i])}</th>"
        + "".join(f'<td class="{"ok" if i == j else "bad"}">{v}</td>' for j, v in enumerate(row))
        + "</tr>"
        for i, row in enumerate(cm)
    )
    return f'{note}<div class="scroll"><table class="cm"><tr><th></th>{head}</tr>{rows}</table></div>'


def _calibration_table(cal: dict | None) -> str:
    if not cal:
        return ""
    rows = "".join(
        f"<tr><th>{label}</th><td class='num'>{_fmt(cal.get(f'{key}_before'))}</td><td class='num'>{_fmt(cal.get(f'{key}_after'))}</td></tr>"
        for key, label in (("brier", "Brier score"), ("ece", "Expected calibration error"), ("nll", "Log-loss"))
    )
    return (f'<div class="scroll"><table><tr><th>On the test split (lower is better)</th><th>before</th>'
            f'<th>after temperature scaling</th></tr>{rows}</table></div>')


def _eps(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.2f}"


def _site_rows(final: dict, privacy: dict) -> str:
    rows = []
    for site, m in sorted(final.get("sites", {}).items()):
        p = privacy.get("sites", {}).get(site, {})
        eps = p.get("epsilon") or {}
        last_eps = eps[max(eps, key=int)] if eps else None
        ci = m.get("intervals") if isinstance(m.get("intervals"), dict) else {}
        if "evaluation_withheld" in m:
            cells = [f'<td colspan="6">withheld by the hospital\'s policy</td>']
        else:
            cells = [f'<td class="num">{_fmt(m.get("num_test_examples"))}</td>'] + [
                f'<td class="num">{_with_ci(m.get(k), ci.get(k))}</td>'
                for k in ("sensitivity", "specificity", "auc", "balanced_accuracy", "accuracy")
            ]
        rows.append(
            f"<tr><th>{html.escape(site)}</th>{''.join(cells)}"
            f"<td class='num'>{_eps(last_eps)} / {_eps(p.get('budget'))}</td><td>{_fmt(p.get('status'))}</td></tr>"
        )
    return "".join(rows)


def _model_card(cfg: dict, meta: dict, final: dict, privacy: dict, point: dict, mode_text: str, secagg_text: str) -> str:
    data_cfg = cfg["data"]
    classes = meta.get("class_names") or []
    sites = final.get("sites", {})
    n_train = sum(int(m.get("num_train_examples") or 0) for m in sites.values())
    eps = [max((e.get("epsilon") or {"0": None}).items(), key=lambda kv: int(kv[0]))[1]
           for e in privacy.get("sites", {}).values() if e.get("epsilon")]
    eps_text = f"at most {max(eps):.2f} per hospital (budget {cfg['privacy']['epsilon']}, delta {cfg['privacy']['delta']})" if eps else "no per-hospital epsilon recorded"
    source = final.get("global_source")
    withheld = [s for s, m in sites.items() if "evaluation_withheld" in m]
    limitations = [
        f"Trained on {data_cfg.get('dataset') or 'a hospital export'} "
        f"({len(sites)} {'natural hospitals' if data_cfg.get('partition') == 'natural' else 'simulated hospitals, partition ' + html.escape(str(data_cfg.get('partition')))}): "
        "performance on other scanners, populations or case mixes is unknown.",
        "The threshold was chosen on validation data of the same sources; a new site should check sensitivity and "
        "specificity on its own patients before use, and re-choose the threshold if its prevalence differs.",
        "Intervals are 95% stratified bootstrap intervals over test patients: they do not cover variation between "
        "hospitals, over time, or from a different training run (seed).",
        "Differential privacy adds noise to training; the model is less accurate than one trained without it."
        if "differential" in mode_text.lower() and "no " not in mode_text.lower()[:3] else
        "This run did not use differential privacy at the sample level.",
    ]
    not_validated = [
        "No prospective or external validation; no comparison with clinicians; no subgroup analysis "
        "(age, sex, ethnicity are not in the data).",
        "No assessment of clinical utility (decision curves) or of harm from false negatives versus false positives.",
    ]
    if source != "central":
        not_validated.append("No central test split: the headline numbers are example-weighted means of the hospitals' own tests.")
    if withheld:
        not_validated.append(f"Hospitals that withheld their evaluation ({', '.join(map(html.escape, withheld))}) are not in any number above.")
    li = lambda items: "".join(f"<li>{x}</li>" for x in items)  # noqa: E731
    return f"""<div class="cards">
<div class="card"><h3>Intended use</h3><p>Research and evaluation of federated, privacy-preserving training: a decision aid
that flags {html.escape(classes[-1]) if classes else 'the positive class'} for review by a clinician, never a diagnosis on its own.
Not a certified medical device.</p></div>
<div class="card"><h3>Data and sites</h3><ul>{li([
    f"{len(sites)} hospitals, {n_train} training examples in total (each kept {100 * float(data_cfg.get('validation_fraction', 0.1)):.0f}% of its training rows as validation, never trained on).",
    f"Classes: {', '.join(map(html.escape, classes))}.",
    f"Model: {html.escape(str(meta.get('model')))} ({meta.get('num_parameters')} parameters), {cfg['federation']['num_rounds']} rounds, strategy {html.escape(cfg['federation']['strategy'])}.",
])}</ul></div>
<div class="card"><h3>Privacy spent</h3><ul>{li([html.escape(mode_text), f"Epsilon spent: {eps_text}.", html.escape(secagg_text)])}</ul></div>
<div class="card"><h3>Limitations</h3><ul>{li(limitations)}</ul></div>
<div class="card"><h3>What was not validated</h3><ul>{li(not_validated)}</ul></div>
</div>"""


def write_report(out_dir: Path, metrics: dict, privacy: dict, plots: dict[str, Path], meta: dict) -> Path:
    cfg = metrics["config"]
    final = metrics["final"]
    g = final.get("global", {})
    details = final.get("global_details") or {}
    point = final.get("operating_point") or meta.get("operating_point") or {}
    classes = list(meta.get("class_names") or ["class 0", "class 1"])
    mode = recorded_mode(privacy.get("privacy_mode"))
    mode_text = mode.label if mode is not None else str(privacy.get("privacy_mode"))
    no_dp = mode is not None and not mode.private
    sample_level = mode is not None and mode.sample_level
    secagg = privacy.get("secure_aggregation", {})
    secagg_text = (
        f"On: SecAgg+ with {secagg.get('num_shares')} shares, reconstruction threshold "
        f"{secagg.get('reconstruction_threshold')} — the server only ever saw the sum of the hospitals' updates."
        if secagg.get("protocol")
        else "OFF (explicitly requested): the server could see each hospital's update."
    )
    central = final.get("global_source") == "central"
    where = "test patients the operator held out" if central else "test patients of the hospitals (weighted mean)"
    n_test = g.get("n") if central else sum(int(m.get("num_test_examples") or 0) for m in final.get("sites", {}).values())
    headline = _headline(g, details.get("intervals") or {}, classes, n_test, where, point)
    ci_note = ("95% bootstrap intervals; AUC does not depend on the threshold" if details.get("intervals") else
               "no pooled intervals without a central test split: each hospital's are below; AUC does not depend on the threshold")
    round_rows = "".join(
        f"<tr><td class='num'>{r['round']}</td><td class='num'>{_fmt(r['global'].get('auc'))}</td>"
        f"<td class='num'>{_fmt(r['global'].get('balanced_accuracy'))}</td><td class='num'>{_fmt(r['global'].get('loss'))}</td>"
        f"<td class='num'>{_fmt((r.get('operating_point') or {}).get('threshold'))}</td>"
        f"<td class='num'>{_fmt(r.get('duration_s'))}</td><td>{html.escape('; '.join(r.get('events', [])))}</td></tr>"
        for r in metrics["rounds"]
    )
    data_cfg = cfg["data"]
    meta_view = {**meta, "class_names": classes}
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medfed run report</title>
<style>{CSS}</style></head><body>
<h1>Federated training report</h1>
<p>Global model after round {final.get('round')} of {cfg['federation']['num_rounds']},
{html.escape(str(data_cfg.get('dataset') or data_cfg.get('data_path')))}, {len(final.get('sites', {}))} hospitals.</p>
<p class="headline">{headline}</p>
<div class="scroll"><table>
<tr><th>Privacy</th><td class="{'warn' if no_dp else ''}">{html.escape(mode_text)}
{f"; budget epsilon {cfg['privacy']['epsilon']}, delta {cfg['privacy']['delta']} per hospital" if sample_level else ''}</td></tr>
<tr><th>Secure aggregation</th><td class="{'' if secagg.get('protocol') else 'warn'}">{html.escape(secagg_text)}</td></tr>
<tr><th>Test results</th><td>sensitivity {_with_ci(g.get('sensitivity'), (details.get('intervals') or {}).get('sensitivity'))},
specificity {_with_ci(g.get('specificity'), (details.get('intervals') or {}).get('specificity'))},
balanced accuracy {_with_ci(g.get('balanced_accuracy'), (details.get('intervals') or {}).get('balanced_accuracy'))},
accuracy {_with_ci(g.get('accuracy'), (details.get('intervals') or {}).get('accuracy'))},
AUC {_with_ci(g.get('auc'), (details.get('intervals') or {}).get('auc'))} ({ci_note})</td></tr>
</table></div>
<h2>Operating point</h2>
{_operating_point(point, meta_view)}
<h2>Confusion matrix at the operating point</h2>
{_confusion(details.get('confusion_matrix'), classes, _summed_site_confusion(final))}
<div class="cards">
{'<div class="card"><h3>ROC curve, operating point marked</h3>' + _img(plots['roc']) + '</div>' if 'roc' in plots else ''}
{'<div class="card"><h3>Calibration</h3>' + _img(plots['calibration']) + _calibration_table(details.get('calibration')) + '</div>' if 'calibration' in plots else ''}
</div>
<h2>Each hospital (final round, its own test patients)</h2>
<p>Every value at the operating point above, with its 95% bootstrap interval; "n/a" means undefined there
(for example AUC when a hospital's test patients all have the same diagnosis).</p>
<p class="hint">Swipe the table sideways for every column.</p>
<div class="scroll"><table class="sites"><tr><th>Hospital</th><th>Test patients</th><th>Sensitivity</th><th>Specificity</th><th>AUC</th>
<th>Balanced acc.</th><th>Accuracy</th><th>Epsilon spent / budget</th><th>Status</th></tr>
{_site_rows(final, privacy)}</table></div>
{_classes_section(metrics.get("final_classes"), meta.get("class_names") or [], g)}
<h2>Model card</h2>
{_model_card(cfg, meta_view, final, privacy, point, mode_text, secagg_text)}
<h2>Learning curves</h2>{_img(plots['learning_curves'])}
<h2>Privacy spent</h2>{_img(plots['epsilon'])}
<h2>Round by round</h2>
<div class="scroll"><table><tr><th>Round</th><th>AUC</th><th>Balanced acc.</th><th>Loss</th><th>Threshold</th><th>Seconds</th><th>Events</th></tr>
{round_rows}</table></div>
<h2>Reproducibility</h2>
<div class="scroll"><pre>{html.escape(_meta_text(meta))}</pre></div>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _classes_section(classes: dict | None, names: list[str], g: dict) -> str:
    """Multiclass runs: macro values, then per class sensitivity, F1 and the confusion matrix of
    the final global model on the operator's test split."""
    if not classes:
        return ""
    cm = classes["confusion_matrix"]
    names = [str(n) for n in names] if len(names) == len(cm) else [str(i) for i in range(len(cm))]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{_fmt(sens)}</td><td>{_fmt(f1)}</td>"
        + "".join(f"<td>{v}</td>" for v in row)
        + "</tr>"
        for name, sens, f1, row in zip(names, classes["sensitivity_per_class"], classes["f1_per_class"], cm)
    )
    return f"""<h2>Per class (final global model, central test split)</h2>
<p>Macro AUC (one-vs-rest) {_fmt(g.get('auc'))}, macro-F1 {_fmt(g.get('f1'))}, balanced accuracy
{_fmt(g.get('balanced_accuracy'))}. Rows: true class; the last columns count predictions per class.</p>
<table><tr><th>Class</th><th>Sensitivity</th><th>F1</th>{head}</tr>{rows}</table>"""


def _meta_text(meta: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in meta.items() if k not in ("config", "operating_point"))
