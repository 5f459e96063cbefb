"""The clinician's report: headline in words with intervals, operating point, confusion matrix,
per-site intervals, model card; the recorder keeps what the report needs."""

from __future__ import annotations

import json
from pathlib import Path

from common.config import RunConfig
from server.records import RunRecorder
from server.report import write_plots, write_report

POINT = {"rule": "youden", "threshold": 0.62, "temperature": 1.8, "source": "central validation",
         "validation_n": 524, "validation_sensitivity": 0.93, "validation_specificity": 0.86,
         "target_sensitivity": None, "note": ""}
CI = {"auc": [0.94, 0.97], "accuracy": [0.86, 0.91], "balanced_accuracy": [0.85, 0.9],
      "sensitivity": [0.9, 0.95], "specificity": [0.81, 0.9]}


def _recorder(tmp_path: Path) -> RunRecorder:
    cfg = RunConfig.from_flower({**RunConfig().to_flower(), "num-rounds": 1})
    rec = RunRecorder(tmp_path, config=cfg.to_dict(), privacy_mode="sample-dp", site_names=["site-0", "site-1"],
                      secure_aggregation={"enabled": True, "protocol": "SecAgg+", "num_shares": 3,
                                          "reconstruction_threshold": 2})
    rec.start_round(1)
    rec.on_operating_point(1, POINT)
    reliability = {"count": [10] * 10, "confidence": [i / 10 + 0.05 for i in range(10)], "observed": [i / 10 for i in range(10)]}
    details = {"intervals": CI, "confusion_matrix": [[200, 34], [27, 363]],
               "calibration": {"temperature": 1.8, "brier_before": 0.2, "brier_after": 0.1, "ece_before": 0.3,
                               "ece_after": 0.05, "nll_before": 1.2, "nll_after": 0.4},
               "reliability": {"before": reliability, "after": reliability}}
    g = {"accuracy": 0.902, "balanced_accuracy": 0.889, "auc": 0.955, "sensitivity": 0.931, "specificity": 0.855, "n": 624}
    rec.on_central_evaluation(1, 0.3, g, {"fpr": [0, 0.15, 1], "tpr": [0, 0.93, 1], "auc": 0.955,
                                          "point": {"fpr": 0.145, "tpr": 0.931, "threshold": 0.62}}, details)
    site = {"site": "site-0", "accuracy": 0.9, "balanced_accuracy": 0.88, "auc": 0.95, "sensitivity": 0.92,
            "specificity": 0.84, "intervals": json.dumps(CI), "confusion": json.dumps([[50, 9], [6, 120]])}
    rec.on_evaluate_results(1, [(185, 0.3, site), (0, 0.0, {"site": "site-1", "withheld": "policy"})], [])
    rec.end_round(1, weights=None, optimizer_state=None)
    return rec


def test_recorder_keeps_the_operating_point_details_and_parses_site_intervals(tmp_path: Path) -> None:
    doc = _recorder(tmp_path).metrics_document()
    final = doc["final"]
    assert final["operating_point"] == POINT and final["global_source"] == "central"
    assert final["global_details"]["confusion_matrix"] == [[200, 34], [27, 363]]
    assert final["sites"]["site-0"]["intervals"] == CI and final["sites"]["site-0"]["confusion"] == [[50, 9], [6, 120]]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["final"]["operating_point"]["threshold"] == 0.62


def test_report_headline_in_words_with_intervals_and_model_card(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    metrics, privacy = rec.metrics_document(), rec.privacy_document()
    plots = write_plots(tmp_path, metrics, privacy, rec.final_roc)
    assert {"roc", "calibration"} <= set(plots)
    meta = {"model": "cnn", "num_parameters": 1000, "class_names": ["normal", "pneumonia"], "operating_point": POINT}
    html = write_report(tmp_path, metrics, privacy, plots, meta).read_text()
    assert "finds <b>93%</b> [90-95] of pneumonia cases and clears <b>86%</b> [81-90] of normal cases" in html
    assert "threshold 0.62" in html and "Youden" in html and "the operator&#x27;s own validation split" in html
    assert "<td class=\"ok\">363</td>" in html and "withheld by the hospital's policy" in html
    assert "0.920 <span class=\"ci\">[0.90-0.95]</span>" in html
    for section in ("Intended use", "Data and sites", "Privacy spent", "Limitations", "What was not validated"):
        assert section in html
    assert 'name="viewport"' in html and "@media (max-width: 600px)" in html


def test_report_without_a_central_test_split_uses_the_hospitals_numbers(tmp_path: Path) -> None:
    cfg = RunConfig.from_flower({**RunConfig().to_flower(), "num-rounds": 1, "dataset": "heart-disease",
                                 "partition": "natural"})
    rec = RunRecorder(tmp_path, config=cfg.to_dict(), privacy_mode="sample-dp", site_names=["a", "b"],
                      secure_aggregation={"enabled": False})
    rec.start_round(1)
    rec.on_operating_point(1, {**POINT, "source": "site validation (2 sites)", "validation_n": 41})
    site = {"accuracy": 0.8, "balanced_accuracy": 0.8, "auc": 0.85, "sensitivity": 0.8, "specificity": 0.8,
            "intervals": json.dumps(CI)}
    rec.on_evaluate_results(1, [(50, 0.4, {**site, "site": "a", "confusion": json.dumps([[20, 5], [5, 20]])}),
                                (30, 0.4, {**site, "site": "b", "confusion": json.dumps([[12, 3], [3, 12]])})], [])
    rec.end_round(1, weights=None, optimizer_state=None)
    metrics, privacy = rec.metrics_document(), rec.privacy_document()
    assert metrics["final"]["global_source"] == "federated"
    plots = write_plots(tmp_path, metrics, privacy, None)
    meta = {"model": "mlp", "num_parameters": 10, "class_names": ["no disease", "disease"]}
    html = write_report(tmp_path, metrics, privacy, plots, meta).read_text()
    assert "of cases without disease, on 80 test patients of the hospitals" in html
    assert '<td class="ok">32</td>' in html and '<td class="bad">8</td>' in html  # summed matrices
    assert "the hospitals&#x27; validation splits (2 sites)" in html
