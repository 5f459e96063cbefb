"""Clinical text: the hashing tokeniser leaks no vocabulary, the medical-abstracts dataset and the
text-table format load and refuse bad files with the row and the fix, and a short private
federation over the abstracts learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from common.config import DataConfig, PrivacyConfig, RunConfig
from common.datasets.builtin import medical_abstracts as ma
from common.datasets.check import check_dataset, summarise
from common.datasets.contract import SiteData, Split, normalise_with_site_stats
from common.datasets.hospital import load_hospital
from common.datasets.selection import load_run_dataset
from common.datasets.tokenise import Tokeniser
from common.errors import ConfigError, DataError
from simulations.cli.data import data_app

REPO = Path(__file__).resolve().parents[1]
NOTES = [
    "Patient presents with acute myocardial infarction; troponin elevated.",
    "Colonic adenocarcinoma, stage II, resected. No metastases.",
    "Migraine with aura, recurrent; MRI of the brain unremarkable.",
    "Chronic hepatitis and portal hypertension with varices.",
]


def data_error(fn, *names: str) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    for name in names:
        assert name in str(info.value), f"{name!r} not in: {info.value}"
    return info.value


# ------------------------------------------------------------------------------ tokeniser


def test_a_documents_ids_depend_on_that_document_only():
    """A vocabulary built from the training notes would give "myocardial" a different id (or
    none) depending on which other notes the site holds; hashing gives the same ids whatever
    the corpus, here two corpora that share one note and nothing else."""
    tok = Tokeniser(max_tokens=32, buckets=4096)
    alone, _ = tok.encode([NOTES[0]])
    with_others, _ = tok.encode([NOTES[1], NOTES[0], NOTES[2]])
    with_rare, _ = tok.encode(["Mr Zbigniew Qwertyuiop MRN 99812 seen", NOTES[0]] * 5)
    assert np.array_equal(alone[0], with_others[1]) and np.array_equal(alone[0], with_rare[1])
    # and the same words always map to the same ids, in any document
    a, _ = tok.encode(["infarction troponin"])
    assert a[0, 0] == alone[0, tok.words(NOTES[0]).index("infar")]


def test_ids_are_stable_across_processes_and_releases():
    """Not Python's salted hash(): another interpreter with another hash seed gives the same ids,
    and the ids are pinned here, so a change of the hash is a visible break of old models."""
    tok = Tokeniser(max_tokens=4, buckets=8192)
    ids, _ = tok.encode(["Heart failure, Heart"])
    assert ids[0].tolist() == [float(tok.token_id("heart")), float(tok.token_id("failu")), ids[0, 0], 0.0]
    assert tok.token_id("heart") == 1 + int.from_bytes(__import__("hashlib").blake2b(b"heart", digest_size=8).digest(), "little") % 8191
    code = "from common.datasets.tokenise import Tokeniser; print(Tokeniser(4, 8192).token_id('heart'))"
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) == tok.token_id("heart")


def test_tokens_are_content_word_stems_by_fixed_rules():
    """Stop words (scikit-learn's public list), numbers and words of three characters or fewer
    go; every other word is cut to five characters, so inflections share a bucket. Each rule
    looks at one word only (no corpus)."""
    tok = Tokeniser(max_tokens=32, buckets=8192)
    words = tok.words("The tumours and a tumour of the Heart: 12 mg, cardiac and cardiology; MI")
    assert words == ["tumou", "tumou", "heart", "cardi", "cardi"]
    ids, lengths = tok.encode(["Tumours", "tumour", "of the and 2024 mg"])
    assert ids[0, 0] == ids[1, 0] == tok.token_id("tumou")
    assert lengths.tolist() == [1, 1, 0] and (ids[2] == 0).all()


def test_text_linear_features_depend_on_the_document_only_and_are_sublinear_tf_l2():
    """The bigram hash and the log(1 + tf) / L2 weights of text-linear are fixed functions of
    one document's ids: the same document gets the same features alone, next to other notes or
    next to rare identifiers, and a model built at another site (or after training on other
    notes) computes them identically."""
    from common.models import build_model

    tok = Tokeniser(max_tokens=32, buckets=4096)
    model = build_model("text-linear", (32,), 4, buckets=4096)
    doc = "heart failure with reduced ejection fraction; heart failure again, heart"
    alone, _ = tok.encode([doc])
    batch, _ = tok.encode(["Mr Zbigniew Qwertyuiop MRN 99812 seen", doc, NOTES[1]])
    f1, w1 = model.features(torch.as_tensor(alone))
    f2, w2 = model.features(torch.as_tensor(batch))
    assert torch.equal(f1[0], f2[1]) and torch.allclose(w1[0], w2[1])
    trained_elsewhere = build_model("text-linear", (32,), 4, buckets=4096)
    with torch.no_grad():
        trained_elsewhere.embedding.weight.normal_()
    f3, w3 = trained_elsewhere.features(torch.as_tensor(alone))
    assert torch.equal(f1, f3) and torch.equal(w1, w3)
    # each distinct feature carries log(1 + its count); the document vector has norm `scale`
    per_feature: dict[int, float] = {}
    for fid, wt in zip(f1[0].tolist(), w1[0].tolist()):
        if fid:
            per_feature[fid] = per_feature.get(fid, 0.0) + wt
    heart = tok.token_id("heart")
    ratio = per_feature[heart] / per_feature[tok.token_id("reduc")]
    assert ratio == pytest.approx(np.log1p(3) / np.log1p(1), rel=1e-5)  # "heart" 3 times, "reduced" once
    assert sum(v * v for v in per_feature.values()) == pytest.approx(model.scale**2, rel=1e-5)
    assert len(per_feature) == len(set(tok.words(doc)))  # unigrams only by default
    with_bigrams = build_model("text-linear", (32,), 4, buckets=4096, bigrams=True)
    fb, _ = with_bigrams.features(torch.as_tensor(alone))
    assert len(set(fb[0].tolist()) - {0}) > len(per_feature)
    assert (w1[f1 == 0] == 0).all()


def test_truncation_padding_and_lengths():
    tok = Tokeniser(max_tokens=5, buckets=64)
    x, lengths = tok.encode(["cardiac renal hepatic pulmonary gastric neural vascular", "Über café", "tumour"])
    assert x.dtype == np.float32 and x.shape == (3, 5)
    assert lengths.tolist() == [7, 2, 1]
    assert (x[1, 2:] == 0).all() and (x[2, 1:] == 0).all() and (x[0] > 0).all()
    assert x.max() < 64 and x[x > 0].min() >= 1  # 0 is padding only
    with pytest.raises(ConfigError, match="hash-buckets"):
        Tokeniser(max_tokens=5, buckets=2**25)


def test_text_is_never_normalised_with_site_statistics():
    x = torch.tensor([[5.0, 9.0, 0.0], [7.0, 0.0, 0.0]])
    site = SiteData("a", Split(x, torch.tensor([0, 1])), Split(x, torch.tensor([0, 1])))
    assert torch.equal(normalise_with_site_stats(site, "text").train.x, x)
    assert not torch.equal(normalise_with_site_stats(site, "tabular").train.x, x)


# ------------------------------------------------------------------------------ medical-abstracts


def test_medical_abstracts_loads_three_hospitals_and_a_fixed_stratified_split(data_dir):
    ds = ma.load(data_dir, 0)
    assert ds.modality == "text" and ds.input_shape == (256,) and ds.num_classes == 5
    assert ds.site_names() == list(ma.SITES) and check_dataset(ds) == []
    parts = ma.splits(data_dir, 0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [2021, 289, 578]
    assert len(ds.central_test) == 578 and sum(len(s.test) for s in ds.sites.values()) == 578
    assert sum(len(s.train) for s in ds.sites.values()) == 2021
    counts = {name: s.train.class_counts(5) for name, s in ds.sites.items()}
    assert counts["cancer-centre"][0] == max(counts["cancer-centre"])  # mostly neoplasms
    assert counts["heart-and-brain-centre"][3] == max(counts["heart-and-brain-centre"])  # cardiovascular
    # the whole split is stratified: class shares of train and test within 1 point of each other
    share = lambda y: np.bincount(y.numpy(), minlength=5) / len(y)  # noqa: E731
    assert np.abs(share(parts["train"].y) - share(parts["test"].y)).max() < 0.01
    again = ma.load(data_dir, 0)
    assert torch.equal(again.sites["cancer-centre"].train.x, ds.sites["cancer-centre"].train.x)
    assert not torch.equal(ma.splits(data_dir, 1)["test"].y, parts["test"].y)  # the seed picks the split


def test_run_config_tokeniser_settings_reach_the_builtin_dataset(data_dir):
    cfg = DataConfig(dataset="medical-abstracts", partition="iid", num_sites=3, max_tokens=64, hash_buckets=512)
    ds = load_run_dataset(cfg, data_dir)
    assert ds.input_shape == (64,) and ds.site_names() == ["site-0", "site-1", "site-2"]
    assert float(max(s.train.x.max() for s in ds.sites.values())) < 512
    # partitions lose nothing: training rows are split into train and each site's validation rows
    assert sum(len(s.train) + len(s.test) + len(s.val or ()) for s in ds.sites.values()) == 2021


# ------------------------------------------------------------------------------ text-table


@pytest.fixture
def notes_csv(tmp_path) -> Path:
    rows = [{"note": NOTES[i % 4] + f" visit {i}", "diagnosis": ["cardio", "onco", "neuro", "gastro"][i % 4]}
            for i in range(40)]
    path = tmp_path / "notes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_text_table_loads_with_named_columns(notes_csv, tmp_path):
    ds = load_hospital(notes_csv, "text-table", text_column="note", label_column="diagnosis", max_tokens=16)
    assert ds.modality == "text" and ds.input_shape == (16,)
    assert ds.class_names == ["cardio", "gastro", "neuro", "onco"] and check_dataset(ds) == []
    parquet = tmp_path / "notes.parquet"
    pd.read_csv(notes_csv).to_parquet(parquet)
    pq = load_hospital(parquet, "text-table", text_column="note", label_column="diagnosis", max_tokens=16)
    assert torch.equal(pq.sites["notes"].train.x, ds.sites["notes"].train.x)


def test_text_table_refuses_bad_files_naming_the_row_and_the_fix(notes_csv, tmp_path):
    load = lambda p, **kw: load_hospital(p, "text-table", **({"text_column": "note", "label_column": "diagnosis"} | kw))  # noqa: E731
    err = data_error(lambda: load(notes_csv, text_column="text"), "no column 'text'", "note, diagnosis")
    assert "--text-column" in err.fix
    assert "--label-column" in data_error(lambda: load(notes_csv, label_column="label"), "'label'").fix

    latin = tmp_path / "latin1.csv"
    latin.write_bytes("note,diagnosis\nfine,a\nfine,b\nAn\xe4mie chronisch,a\n".encode("latin-1"))
    assert "UTF-8" in data_error(lambda: load(latin), "not UTF-8", "line 4").fix

    df = pd.read_csv(notes_csv)
    for cell, words in (("", "empty text"), ("   ", "empty text"), ("12345", "no words")):
        bad = df.copy()
        bad.loc[6, "note"] = cell
        path = tmp_path / "bad.csv"
        bad.to_csv(path, index=False)
        data_error(lambda: load(path), words, "line 8", str(path))

    nolabel = df.copy()
    nolabel.loc[3, "diagnosis"] = ""
    nolabel.to_csv(tmp_path / "nolabel.csv", index=False)
    data_error(lambda: load(tmp_path / "nolabel.csv"), "empty label", "line 5")

    numbers = pd.DataFrame({"note": [1, 2, 3, 4], "diagnosis": ["a", "b", "a", "b"]})
    numbers.to_parquet(tmp_path / "numbers.parquet")
    assert "strings" in data_error(lambda: load(tmp_path / "numbers.parquet"), "not text", "row 1").fix

    coded = df.assign(diagnosis=[i % 3 for i in range(40)])
    coded.loc[9, "diagnosis"] = 7
    coded.to_csv(tmp_path / "coded.csv", index=False)
    data_error(lambda: load_hospital(tmp_path / "coded.csv", "text-table", text_column="note",
                                     label_column="diagnosis", num_classes=3), "out of range", "line 11")


def test_data_check_summarises_documents_lengths_and_truncation(notes_csv):
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    res = CliRunner().invoke(app, ["data", "check", "--path", str(notes_csv), "--format", "text-table",
                                   "--text-column", "note", "--label-column", "diagnosis", "--max-tokens", "6",
                                   "--json"])
    assert res.exit_code == 0, res.output
    text = json.loads(res.output)["text"]
    # the notes hold 6..8 content words (stop words, numbers and short words are not tokens): every one reaches 6
    assert text["documents"] == 40 and text["max_tokens"] == 6 and text["at_max_tokens"] == 40
    human = CliRunner().invoke(app, ["data", "check", "--path", str(notes_csv), "--format", "text-table",
                                     "--text-column", "note", "--label-column", "diagnosis"])
    assert "40 documents" in human.output and "reach max-tokens=256" in human.output


def test_label_column_reaches_every_table_format_through_the_run_config(tmp_path):
    table = tmp_path / "ward.csv"
    pd.DataFrame({"age": np.arange(40.0), "outcome": [i % 2 for i in range(40)]}).to_csv(table, index=False)
    cfg = RunConfig.from_flower(RunConfig().to_flower() | {"dataset": "", "data-path": str(table),
                                                           "data-format": "table", "label-column": "outcome",
                                                           "num-sites": 1, "min-sites": 1, "secagg": False})
    ds = load_run_dataset(cfg.data)
    assert ds.input_shape == (1,) and ds.num_classes == 2
    with pytest.raises(ConfigError, match="text-column and label-column"):
        RunConfig.from_flower({"text-column": "x", "label-column": "x"})
    with pytest.raises(ConfigError, match="max-tokens"):
        RunConfig.from_flower({"max-tokens": 0})


def test_summary_of_a_text_dataset_is_json_ready(data_dir):
    summary = summarise(ma.load(data_dir, 0))
    assert summary["valid"] and summary["text"]["documents"] == 2021 + 578
    # content words only (stop words, numbers, short words dropped): 1 abstract in 2,599 reaches 256 tokens
    assert 0 < summary["text"]["at_max_tokens_fraction"] < 0.01
    json.dumps(summary)


def test_class_breakdown_counts_the_confusion_matrix_and_per_class_sensitivity():
    from common.metrics import class_breakdown

    y = np.array([0, 0, 1, 2, 2, 2])
    probs = np.eye(4)[[0, 1, 1, 2, 2, 0]]  # class 3 never occurs
    out = class_breakdown(y, probs)
    assert out["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert out["sensitivity_per_class"] == [0.5, 1.0, 2 / 3, None]
    assert out["f1_per_class"][1] == pytest.approx(2 / 3) and out["f1_per_class"][3] is None


@pytest.mark.slow
def test_a_short_private_federation_over_the_abstracts_learns(tmp_path, data_dir):
    """3 natural-looking hospitals, DP-SGD (epsilon 8) and SecAgg+, 3 rounds of two local epochs
    with 128 tokens: the global model's macro AUC ends well above chance (0.5; 0.66 at seed 0
    here), and the report has the per-class section."""
    from simulations.simulate import build_config, run

    cfg = build_config({"dataset": "medical-abstracts", "partition": "natural", "num-rounds": 3,
                        "local-epochs": 2, "max-tokens": 128, "epsilon": 8.0, "out-dir": str(tmp_path / "run")})
    result = run(cfg, data_dir=str(data_dir))
    final = result.metrics["final"]["global"]
    assert result.metrics["config"]["training"]["model"] == "auto"
    assert json.loads((result.out_dir / "global_model.json").read_text())["model"] == "text-linear"
    assert final["auc"] >= 0.6, final
    classes = result.metrics["final_classes"]
    assert sum(map(sum, classes["confusion_matrix"])) == 578 and len(classes["sensitivity_per_class"]) == 5
    assert "Per class" in (result.out_dir / "report.html").read_text()
    assert all(e["status"] == "ok" for e in result.privacy["sites"].values()) and len(result.privacy["sites"]) == 3


@pytest.mark.parametrize("name", ["text-bag", "text-linear", "text-gru", "text-lstm"])
@pytest.mark.parametrize("clipping", ["ghost", "flat"])
def test_text_models_train_under_the_dp_sgd_trainer(tmp_path, name, clipping):
    """The site's own DP-SGD trainer (Opacus, Poisson sampling, both clipping modes) trains every
    text model: weights move, the padding row stays out of the prediction, epsilon is spent."""
    from client.privacy.ledger import PrivacyLedger
    from client.privacy.private_trainer import PrivateTrainer
    from common.models import build_model, get_weights, model_options

    tok = Tokeniser(max_tokens=24, buckets=256)
    x, _ = tok.encode([NOTES[i % 4] + f" day {i}" for i in range(64)])
    split = Split.of(x, np.arange(64) % 4)
    torch.manual_seed(0)
    model = build_model(name, (24,), 4, **model_options("text", 256))
    before = [w.copy() for w in get_weights(model)]
    trainer = PrivateTrainer(privacy=PrivacyConfig(clipping=clipping), num_rounds=1, local_epochs=1,
                             batch_size=32, num_examples=64, ledger=PrivacyLedger(tmp_path / "ledger.json"),
                             run_name="notes", learning_rate=0.5)
    result = trainer.train_round(model, split, device=torch.device("cpu"))
    assert 0 < result.epsilon <= 8.0 + 1e-6 and result.steps >= 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, get_weights(model)))
    with torch.no_grad():  # noise lands on the padding row too, but padding never reaches the logits
        model.embedding.weight[0] += 100.0
        padded = torch.cat([split.x[:2, :5], torch.zeros(2, 19)], dim=1)
        shifted = model(padded)
        model.embedding.weight[0] -= 100.0
        assert torch.allclose(model(padded), shifted, atol=1e-4)
