"""task = synthesize: the public-schema encoding, the GAN trainer's privacy argument for the table
GAN and the image DCGAN (the generator never sees a real row or an un-noised gradient; the
discriminator's real-row gradients go through Opacus' clipping and noise; the ledger counts
every round), bad input, and short private federations whose synthetic table / images medfed
itself reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from opacus.optimizers import DPOptimizer

from client.privacy.gan_trainer import NonPrivateGANTrainer, PrivateGANTrainer
from client.privacy.ledger import PrivacyLedger
from client.privacy.trainers import make_trainer
from common.config import RunConfig
from common.datasets.contract import FederatedDataset, SiteData, Split
from common.errors import ConfigError, DataError, PrivacyBudgetExceededError
from common.synthesis.encoding import TableEncoder
from common.synthesis.gan import TabularGAN
from common.synthesis.image_gan import ImageEncoder, ImageGAN
from common.synthesis.schema import HEART_DISEASE, Column, TableSchema, schema_for

CPU = torch.device("cpu")


def heart_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows inside the heart-disease schema's domain (not real patients)."""
    rng = np.random.default_rng(seed)
    cols = []
    for c in HEART_DISEASE.columns:
        if c.kind == "continuous":
            v = rng.uniform(c.lo, c.hi, n)
            cols.append(np.round(v) if c.integer else np.round(v, 1))
        else:
            cols.append(rng.choice(c.values, n))
    x = np.column_stack(cols)
    y = (x[:, 8] > 0).astype(np.int64)  # exang decides the label: learnable
    return x, y


def cfg(**changes) -> RunConfig:
    base = {"dataset": "heart-disease", "partition": "natural", "task": "synthesize", "num-sites": 4,
            "epsilon": 5.0, "num-rounds": 2, "local-epochs": 1, "batch-size": 16}
    return RunConfig.from_flower(RunConfig().to_flower() | base | changes)


# ----------------------------------------------------------------------------- schema and encoding


def test_encoding_round_trips_values_in_the_declared_domain():
    enc = TableEncoder(HEART_DISEASE)
    x, _ = heart_rows(200)
    back = enc.decode(enc.encode(x).numpy(), np.random.default_rng(0))
    np.testing.assert_allclose(back, x, atol=1e-6)
    assert enc.dim == sum(s.width for s in enc.spans)


def test_rows_outside_the_declared_domain_are_refused_not_clipped():
    enc = TableEncoder(HEART_DISEASE)
    x, _ = heart_rows(20)
    x[3, 4] = 900.0  # chol
    with pytest.raises(DataError, match="'chol' outside its declared domain") as err:
        enc.check(x, "site 'a'")
    assert "schema" in err.value.fix


@pytest.mark.parametrize(
    "column, words",
    [
        (Column("x", "categorical", values=(1.0,)), "at least 2 distinct values"),
        (Column("x", "continuous", lo=3.0, hi=3.0), "finite min < max"),
        (Column("x", "text"), "supported kinds are continuous, categorical"),
    ],
)
def test_unusable_schema_columns_are_refused_with_the_fix(column, words):
    with pytest.raises(ConfigError, match=words) as err:
        TableSchema((column, Column("y", "categorical", values=(0.0, 1.0)))).validate()
    assert "synth-schema" in err.value.fix


def test_a_table_without_a_schema_is_refused_and_a_schema_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match="No public schema") as err:
        schema_for("", "")
    assert "--schema" in err.value.fix
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"columns": [{"name": "a", "kind": "continuous", "min": 0, "max": 1},
                                            {"name": "b", "kind": "categorical", "values": [0, 1, 2]}]}))
    schema = schema_for("", str(path))
    assert schema.names == ("a", "b") and schema.columns[1].values == (0.0, 1.0, 2.0)


def test_the_schema_takes_the_runs_label_column_and_travels_inline(tmp_path):
    columns = [{"name": "age", "kind": "continuous", "min": 0, "max": 100},
               {"name": "sex", "kind": "categorical", "values": [0, 1]}]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"columns": columns}))
    assert schema_for("", str(path), "diagnosis").label == "diagnosis"  # no label named: the run's label-column
    assert schema_for("", str(path)).label == "label"
    inline = json.dumps({"label": "diagnosis", "columns": columns})  # how a deployed run carries it to the sites
    assert schema_for("", inline, "diagnosis").names == ("age", "sex")
    with pytest.raises(ConfigError, match="names the label column 'diagnosis'") as err:
        schema_for("", inline, "label")
    assert "--label-column diagnosis" in err.value.fix
    with pytest.raises(ConfigError, match="label column 'age' is also declared as a feature column"):
        schema_for("", json.dumps({"columns": columns}), "age")


def test_unsupported_data_and_wrong_image_sizes_are_refused_with_the_fix():
    from common.synthesis.setup import run_encoder

    signal = FederatedDataset("ecg", "signal", (1, 140), 2, ["a", "b"], {})
    with pytest.raises(ConfigError, match="supports tables and 28x28 grey images") as err:
        run_encoder(cfg(), signal)
    assert "--format npz" in err.value.fix
    for shape in ((3, 28, 28), (1, 64, 64)):
        with pytest.raises(ConfigError, match=r"makes 28x28 grey images") as err:
            run_encoder(cfg(), FederatedDataset("xray", "image", shape, 2, ["a", "b"], {}))
        assert "resize the images to 28x28" in err.value.fix
    images = FederatedDataset("xray", "image", (1, 28, 28), 2, ["a", "b"], {})
    with pytest.raises(ConfigError, match="holds images") as err:
        run_encoder(cfg(**{"synth-schema": "s.json"}), images)
    assert "drop --schema" in err.value.fix
    assert isinstance(run_encoder(cfg(), images), ImageEncoder)


def test_an_image_synthesis_run_chooses_no_operating_point_on_the_operator_validation_split():
    """PneumoniaMNIST has an operator validation split; a synthesis run has no classifier to
    threshold, so the server must not build one (model 'image-dcgan' is not a classifier)."""
    from server.operating import OperatingPointChooser

    val = Split.of(np.zeros((4, 1, 28, 28), np.float32), np.array([0, 1, 0, 1]))
    ds = FederatedDataset("xray", "image", (1, 28, 28), 2, ["a", "b"], {}, central_val=val)
    chooser = OperatingPointChooser(cfg(), ds, "image-dcgan", record=lambda *a, **k: None)
    assert not chooser.central and chooser.model is None


def test_image_encoding_is_the_fixed_public_map_and_refuses_bad_pixels():
    enc = ImageEncoder()
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28)).astype(np.float32) / 255.0
    coded = enc.encode(x)
    assert float(coded.min()) >= -1.0 and float(coded.max()) <= 1.0
    back = enc.decode(coded.numpy())
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    np.testing.assert_array_equal(back, np.round(x[:, 0] * 255).astype(np.uint8))
    with pytest.raises(DataError, match=r"pixel values in \[0, 1.5\]"):
        enc.check(x * 1.5, "site 'a'")
    with pytest.raises(DataError, match=r"shape \(1, 32, 32\)") as err:
        enc.check(np.zeros((2, 1, 32, 32), np.float32), "site 'a'")
    assert "28x28" in err.value.fix


def test_task_is_validated():
    with pytest.raises(ConfigError, match="task='draw' is unknown"):
        RunConfig.from_flower({"task": "draw"})


# ----------------------------------------------------------------------------- the privacy argument


def _site(n: int = 48) -> tuple[TableEncoder, Split]:
    enc = TableEncoder(HEART_DISEASE)
    x, y = heart_rows(n)
    return enc, Split(enc.encode(x), torch.from_numpy(y))


def _image_site(n: int = 40) -> Split:
    """Images in [0, 1] whose class is their brightness (not real X-rays), in the GAN's encoding."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = (rng.random((n, 1, 28, 28)) * 0.5 + 0.5 * y[:, None, None, None]).astype(np.float32)
    return Split(ImageEncoder().encode(x), torch.from_numpy(y))


def _gan_and_site(kind: str):
    torch.manual_seed(0)
    if kind == "table":
        enc, split = _site()
        return TabularGAN(enc, 2), split
    return ImageGAN(2), _image_site()


@pytest.mark.parametrize("kind", ["table", "image"])
def test_generator_never_sees_real_rows_and_discriminator_steps_are_dp_sgd(tmp_path, kind):
    """Spies on one private round, for the table GAN and the image DCGAN: (1) every generator
    input is (noise, one-hot class), never a data row or image; (2) every discriminator step is
    an Opacus DPOptimizer step with noise > 0 and per-sample gradients for each row of the batch;
    (3) no generator parameter receives a gradient while real rows are in the graph; (4) the
    generator's step leaves the discriminator's (noised) gradients untouched."""
    gan, split = _gan_and_site(kind)
    t = make_trainer(cfg(), num_examples=len(split), ledger_path=tmp_path / "ledger.json", run_name="r")
    assert isinstance(t, PrivateGANTrainer)
    seen_inputs: list[torch.Tensor] = []
    original_forward = gan.generator.forward

    def spy_forward(z, cond):
        seen_inputs.extend([z, cond])
        return original_forward(z, cond)

    gan.generator.forward = spy_forward  # type: ignore[method-assign]
    phase = {"now": ""}
    grads_in_d_phase: list[str] = []
    for name, p in gan.generator.named_parameters():
        p.register_hook(lambda g, name=name: grads_in_d_phase.append(name) if phase["now"] == "d" else None)
    d_steps: list[dict] = []
    original_d, original_g = t._d_step, t._g_step

    def d_step(disc, gan_, d_opt, rows, labels, n_fake):
        assert isinstance(d_opt, DPOptimizer) and d_opt.noise_multiplier > 0
        assert d_opt.max_grad_norm == t.privacy.max_grad_norm
        original_step = d_opt.pre_step

        def pre_step(*a, **k):  # per-sample gradients exist for every real and generated row
            d_steps.append({"rows": len(rows) + n_fake,
                            "grad_sample": [p.grad_sample.shape[0] for p in d_opt.params]})
            return original_step(*a, **k)

        d_opt.pre_step = pre_step
        phase["now"] = "d"
        try:
            return original_d(disc, gan_, d_opt, rows, labels, n_fake)
        finally:
            phase["now"] = ""
            d_opt.pre_step = original_step

    def g_step(gan_, g_opt, n, device):
        before = [None if p.grad is None else p.grad.clone() for p in gan_.discriminator.parameters()]
        phase["now"] = "g"
        original_g(gan_, g_opt, n, device)
        phase["now"] = ""
        after = [None if p.grad is None else p.grad.clone() for p in gan_.discriminator.parameters()]
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before, after))

    t._d_step, t._g_step = d_step, g_step  # type: ignore[method-assign]
    result = t.train_round(gan, split, device=CPU)
    assert d_steps and all(set(s["grad_sample"]) == {s["rows"]} for s in d_steps)
    assert grads_in_d_phase == []
    width = gan.generator.latent + 2
    assert seen_inputs and all(inp.shape[1] in (gan.generator.latent, 2) for inp in seen_inputs)
    assert sum(inp.shape[1] for inp in seen_inputs[:2]) == width
    real = split.x.reshape(len(split), -1)
    for inp in seen_inputs:  # no generator input holds a real row / image (or its encoding)
        assert inp.dim() == 2
        if inp.shape[1] == real.shape[1]:
            assert not (inp[:, None, :] == real[None, :, :]).all(-1).any()
    assert result.epsilon is not None and 0 < result.epsilon <= 5.0 and result.noise_multiplier > 0


def test_the_image_discriminator_is_small_and_opacus_compatible():
    """DP-SGD noise grows with the noised parameter count: the discriminator stays ~14k parameters,
    of layers Opacus computes exact per-sample gradients for (no BatchNorm mixes a batch)."""
    from opacus.validators import ModuleValidator

    gan = ImageGAN(2)
    assert ModuleValidator.validate(gan.discriminator, strict=False) == []
    assert {type(m).__name__ for m in gan.discriminator.modules()} <= {
        "ImageDiscriminator", "Sequential", "Conv2d", "GroupNorm", "LeakyReLU", "Flatten", "Linear"}
    assert sum(p.numel() for p in gan.discriminator.parameters()) < 20_000
    images = gan.sample(torch.tensor([0, 1, 1]))
    assert images.shape == (3, 1, 28, 28) and float(images.abs().max()) <= 1.0
    adv, cls = gan.discriminator(images)
    assert adv.shape == (3,) and cls.shape == (3, 2)


def test_the_ledger_counts_synthesis_rounds_and_refuses_past_the_budget(tmp_path):
    enc, split = _site()
    gan = TabularGAN(enc, 2)
    ledger_path = tmp_path / "ledger.json"
    run = cfg(**{"num-rounds": 1})
    make_trainer(run, num_examples=len(split), ledger_path=ledger_path, run_name="synth-1").train_round(gan, split, device=CPU)
    ledger = PrivacyLedger(ledger_path)
    entry = ledger.entry("synth-1")
    assert entry is not None and len(entry.rounds) == 1 and entry.rounds[0].completed
    assert 4.0 < entry.spent <= 5.0 + 1e-6
    assert ledger.lifetime_spent(run.privacy.delta) >= entry.spent
    with pytest.raises(PrivacyBudgetExceededError):  # the planned round is spent: a second one is refused
        make_trainer(run, num_examples=len(split), ledger_path=ledger_path, run_name="synth-1").train_round(
            gan, split, device=CPU)


def test_no_dp_mode_picks_the_plain_gan_trainer(tmp_path):
    enc, split = _site(32)
    t = make_trainer(cfg(**{"privacy-mode": "none"}), num_examples=len(split), ledger_path=tmp_path / "l.json", run_name="r")
    assert isinstance(t, NonPrivateGANTrainer)
    result = t.train_round(TabularGAN(enc, 2), split, device=CPU)
    assert result.epsilon is None and result.steps == 2
    assert not (tmp_path / "l.json").exists()


# ----------------------------------------------------------------------------- bad input before the run


def _table_dataset(n_per_site: list[int], constant: bool = False) -> FederatedDataset:
    sites = {}
    for i, n in enumerate(n_per_site):
        x, y = heart_rows(n, seed=i)
        if constant:
            x[:, 5] = 0.0  # fbs
        sites[f"s{i}"] = SiteData(f"s{i}", Split.of(x.astype(np.float32), y), Split.of(x.astype(np.float32), y))
    return FederatedDataset("heart-disease", "tabular", (10,), 2, ["no", "yes"], sites)


def test_preflight_refuses_bad_input_with_the_fix():
    from simulations.synthesize import preflight

    with pytest.raises(DataError, match="has 6 training rows") as err:
        preflight(cfg(), _table_dataset([40, 6]))
    assert "leave the site out" in err.value.fix
    with pytest.raises(DataError, match="'fbs' has a single value") as err:
        preflight(cfg(), _table_dataset([40, 40], constant=True))
    assert "drop the column" in err.value.fix
    with pytest.raises(ConfigError, match="too small for 50 rounds") as err:
        preflight(cfg(epsilon=0.05, **{"num-rounds": 50}), _table_dataset([40, 40]))
    assert "--epsilon" in err.value.fix
    assert preflight(cfg(), _table_dataset([40, 40])).schema is HEART_DISEASE


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_short_private_federation_writes_a_table_medfed_reads(tmp_path, data_dir):
    """heart-disease, 4 hospitals, epsilon 5, SecAgg+: the synthetic table loads as a hospital
    table, passes `medfed data check`, trains with `medfed simulate --data`, carries a data card,
    beats chance (TSTR AUC > 0.5 on the real test splits), and every site's ledger holds the run."""

    from common.datasets.hospital import load_hospital
    from simulations.simulate import build_config
    from simulations.synthesize import synthesize

    out = tmp_path / "run"
    run_cfg = build_config({"task": "synthesize", "dataset": "heart-disease", "partition": "natural", "epsilon": 5.0,
                            "num-rounds": 4, "local-epochs": 2, "batch-size": 32, "synth-learning-rate": 0.005,
                            "synth-rows": 400, "out-dir": str(out), "seed": 1})
    result = synthesize(run_cfg)
    card = json.loads((out / "datacard.json").read_text())
    assert card["rows"] == 400 and set(card["source"]["sites"]) == {"cleveland", "hungary", "switzerland", "va"}
    assert all(0 < p["epsilon"] <= 5.0 + 1e-6 and p["delta"] == 1e-4 for p in card["privacy"]["per_site"].values())
    assert card["seed"] == 1 and card["model"]["name"] == "tabular-cgan"
    aucs = [v for v in result.quality.tstr_auc.values() if v is not None]
    assert np.mean(aucs) > 0.5
    assert (out / "quality_report.html").read_text().count("TSTR") >= 2
    for name in card["source"]["sites"]:  # each site's own ledger holds the run's spending
        ledger = PrivacyLedger(out / "sites" / name / "privacy-ledger.json")
        (scope,) = ledger.scopes()
        assert ledger.entry(scope).spent == pytest.approx(card["privacy"]["per_site"][name]["epsilon"])
    for path in (out / "synthetic.csv", out / "synthetic.parquet"):
        ds = load_hospital(path, "table")
        assert ds.modality == "tabular" and ds.input_shape == (10,) and ds.num_classes == 2
    _medfed_reads_back(out / "synthetic.csv", "table", tmp_path / "sim")


@pytest.mark.slow
def test_a_hospital_table_with_its_own_label_column_synthesises_and_reads_back(tmp_path):
    """`medfed synth --data t.csv --label-column diagnosis`: the synthetic table keeps the column's
    name, so `medfed data check` and `medfed simulate` read it back with the same option."""
    import pandas as pd
    from typer.testing import CliRunner

    from simulations.cli.main import app

    x, y = heart_rows(240, seed=5)
    table = pd.DataFrame(x, columns=list(HEART_DISEASE.names)).assign(diagnosis=y)
    table.to_csv(tmp_path / "ward.csv", index=False)
    columns = [{"name": c.name, "kind": c.kind, **({"min": c.lo, "max": c.hi, "integer": c.integer}
                                                  if c.kind == "continuous" else {"values": list(c.values)})}
               for c in HEART_DISEASE.columns]
    (tmp_path / "schema.json").write_text(json.dumps({"columns": columns}))  # names no label: takes the run's
    out = tmp_path / "synth"
    runner = CliRunner()
    res = runner.invoke(app, ["synth", "--data", str(tmp_path / "ward.csv"), "--format", "table",
                              "--label-column", "diagnosis", "--schema", str(tmp_path / "schema.json"),
                              "--sites", "2", "--partition", "iid", "--rounds", "1", "--local-epochs", "1",
                              "--rows", "80", "--no-secagg", "--out", str(out)])
    assert res.exit_code == 0, res.output
    card = json.loads((out / "datacard.json").read_text())
    synthetic = pd.read_csv(out / "synthetic.csv")
    assert card["label_column"] == "diagnosis" and list(synthetic.columns) == [*HEART_DISEASE.names, "diagnosis"]
    assert set(synthetic["diagnosis"]) == {0, 1} and "label" not in synthetic.columns
    _medfed_reads_back(out / "synthetic.csv", "table", tmp_path / "sim", "--label-column", "diagnosis",
                       simulate_extra=("--partition", "iid"))


def test_the_memorisation_check_flags_copied_rows_and_tstr_sees_a_useless_table():
    from common.synthesis.quality import assess

    x, y = heart_rows(300, seed=3)
    train, test = {"a": (x[:200], y[:200])}, {"a": (x[200:], y[200:])}
    copied = assess(HEART_DISEASE, (x[:200], y[:200]), train, test)
    assert copied.dcr_synthetic_median == 0.0 < copied.dcr_test_median
    assert copied.tstr_mean == pytest.approx(copied.trtr_mean)
    noise, _ = heart_rows(200, seed=4)
    useless = assess(HEART_DISEASE, (noise, np.random.default_rng(0).integers(0, 2, 200)), train, test)
    assert useless.tstr_mean < copied.tstr_mean - 0.2  # labels unrelated to the rows: near chance
    assert max(useless.marginals.values()) < 0.2  # same declared domain, so the marginals match


def test_medfed_synth_refuses_a_too_small_epsilon_before_starting(tmp_path, data_dir):
    from typer.testing import CliRunner

    from simulations.cli.main import app

    out = CliRunner().invoke(app, ["synth", "--epsilon", "0.01", "--rounds", "200", "--out", str(tmp_path / "o")])
    assert out.exit_code != 0
    assert "too small for 200 rounds" in out.output and "raise --epsilon" in out.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_short_private_image_federation_writes_an_npz_medfed_reads(tmp_path, data_dir):
    """PneumoniaMNIST, 4 sites, epsilon 8, SecAgg+, 2 short rounds: synthetic.npz is MedMNIST
    layout, passes `medfed data check`, trains with `medfed simulate --data --format npz`, its
    TSTR AUC on the official test split beats chance, and every site's ledger holds the run."""

    from common.datasets.hospital import load_hospital
    from simulations.simulate import build_config
    from simulations.synthesize import IMAGE_RECIPE, synthesize

    out = tmp_path / "run"
    run_cfg = build_config({"task": "synthesize", "dataset": "pneumoniamnist", "partition": "iid", **IMAGE_RECIPE,
                            "num-rounds": 2, "local-epochs": 1, "synth-rows": 400, "out-dir": str(out), "seed": 0})
    result = synthesize(run_cfg)
    card = json.loads((out / "datacard.json").read_text())
    assert card["format"] == "npz" and card["rows"] == 400 and card["model"]["name"] == "image-dcgan"
    assert len(card["source"]["sites"]) == 4
    assert all(0 < p["epsilon"] <= 8.0 + 1e-6 for p in card["privacy"]["per_site"].values())
    with np.load(out / "synthetic.npz") as npz:
        assert npz["train_images"].dtype == np.uint8 and npz["train_images"].shape == (320, 28, 28)
        assert npz["train_labels"].shape == (320, 1) and set(np.unique(npz["train_labels"])) == {0, 1}
        assert npz["test_images"].shape == (80, 28, 28)
    assert result.quality.evaluated_on == "official test split"
    assert result.quality.tstr_auc > 0.5  # beats chance after two DP rounds
    assert (out / "synthetic_samples.png").stat().st_size > 0
    assert "TSTR" in (out / "quality_report.html").read_text()
    for name in card["source"]["sites"]:
        ledger = PrivacyLedger(out / "sites" / name / "privacy-ledger.json")
        (scope,) = ledger.scopes()
        assert ledger.entry(scope).spent == pytest.approx(card["privacy"]["per_site"][name]["epsilon"])
    ds = load_hospital(out / "synthetic.npz", "npz")
    assert ds.modality == "image" and tuple(ds.input_shape) == (1, 28, 28) and ds.num_classes == 2
    _medfed_reads_back(out / "synthetic.npz", "npz", tmp_path / "sim")


def _medfed_reads_back(path, fmt: str, sim_out, *column_options: str, simulate_extra: tuple[str, ...] = ()) -> None:
    """The synthetic file passes `medfed data check` and trains a 1-round `medfed simulate` as it is."""
    from typer.testing import CliRunner

    from simulations.cli.main import app

    runner = CliRunner()
    check = runner.invoke(app, ["data", "check", "--path", str(path), "--format", fmt, *column_options])
    assert check.exit_code == 0, check.output
    sim = runner.invoke(app, ["simulate", "--data", str(path), "--format", fmt, *column_options, "--sites", "2",
                              *simulate_extra, "--rounds", "1", "--no-secagg", "--out", str(sim_out)])
    assert sim.exit_code == 0, sim.output
    assert (sim_out / "report.html").exists()
