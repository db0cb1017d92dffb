"""Sparse autoencoders, feature edits through hooks, and the sae commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shortcutlab.cli import main
from shortcutlab.data import load_split
from shortcutlab.decompose.activations import (
    FeatureEdit,
    collect_activations,
    edited,
    reconstructed,
    resolve_mode,
    to_vectors,
)
from shortcutlab.decompose.run import parse_edit
from shortcutlab.decompose.sae import (
    SAEConfig,
    SparseAutoencoder,
    resample_dead,
    sae_metrics,
    train_sae,
)
from shortcutlab.errors import ShortcutlabError
from shortcutlab.hooks import hook_count

pytestmark = pytest.mark.usefixtures("one_thread")


def sparse_data(count: int = 3000, dim: int = 16, atoms: int = 48, seed: int = 0) -> torch.Tensor:
    """Inputs made of a few of many directions, the structure an SAE should recover."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, dim, generator=generator), dim=1)
    codes = torch.rand(count, atoms, generator=generator)
    codes = codes * (torch.rand(count, atoms, generator=generator) < 0.06)
    return codes @ dictionary * 3.0 + 0.5


@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_sae_training_lowers_the_loss(activation):
    data = sparse_data()
    config = SAEConfig(expansion=4, activation=activation, k=4, l1=1e-3, steps=400,
                       batch_size=256, lr=3e-3, resample_every=100)
    sae, history = train_sae(data, config, show_progress=False)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    metrics = sae_metrics(sae, sparse_data(seed=0)[:1000])
    assert metrics["r2"] > 0.7
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.d_hidden))
    if activation == "topk":
        assert metrics["l0"] <= 4.0


def test_dead_features_are_resampled():
    data = sparse_data(count=500)
    sae = SparseAutoencoder(16, 32)
    sae.fit_input_scale(data)
    with torch.no_grad():
        sae.b_enc[:10] = -1e4  # these can never fire
    optimizer = torch.optim.Adam(sae.parameters())
    dead = (sae.encode(data) > 0).sum(0) == 0
    assert dead[:10].all()
    count = resample_dead(sae, optimizer, data, dead, torch.Generator().manual_seed(0))
    assert count == int(dead.sum())
    assert ((sae.encode(data) > 0).sum(0)[:10] > 0).all()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))


@pytest.mark.parametrize(("layer", "mode"), [("features.conv3", "position"),
                                             ("features.conv2", "pooled"),
                                             ("classifier.fc1", "flat")])
def test_scale_one_leaves_outputs_unchanged(small_cnn, layer, mode):
    x = torch.rand(6, 3, 28, 28)
    vectors = collect_activations(small_cnn, layer, x, mode)
    sae = SparseAutoencoder(vectors.shape[1], vectors.shape[1] * 4)
    sae.fit_input_scale(vectors)
    with torch.no_grad():
        sae.b_enc.fill_(0.1)  # make sure the edited features are on
        reference = small_cnn(x)
        with edited(small_cnn, sae, layer, mode, [FeatureEdit(f, 1.0) for f in range(8)]):
            same = small_cnn(x)
        with edited(small_cnn, sae, layer, mode, [FeatureEdit(f, 0.0) for f in range(8)]):
            ablated = small_cnn(x)
        with edited(small_cnn, sae, layer, mode, [FeatureEdit(0, 1.0, add=5.0)]):
            boosted = small_cnn(x)
    torch.testing.assert_close(same, reference, atol=0, rtol=0)
    assert not torch.allclose(ablated, reference)
    assert not torch.allclose(boosted, reference)
    assert hook_count(small_cnn) == 0


def test_reconstruction_hook_uses_the_sae_and_goes_away(small_cnn):
    x = torch.rand(4, 3, 28, 28)
    vectors = collect_activations(small_cnn, "features.conv3", x, "position")
    sae = SparseAutoencoder(vectors.shape[1], vectors.shape[1] * 4)
    with torch.no_grad():
        reference = small_cnn(x)
        with reconstructed(small_cnn, sae, "features.conv3", "position"):
            rebuilt = small_cnn(x)
        assert not torch.allclose(rebuilt, reference)
        # a perfect autoencoder would give the model back: check the plumbing with one
        with pytest.raises(RuntimeError), \
                reconstructed(small_cnn, sae, "features.conv3", "position"):
            raise RuntimeError("boom")
    assert hook_count(small_cnn) == 0
    torch.testing.assert_close(small_cnn(x), reference)


class _SkipAcross(torch.nn.Module):
    """A skip connection across the layer: the model cannot be cut there."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.head = torch.nn.Linear(3 * 28 * 28, 10)

    def forward(self, x):
        return self.head((self.conv(x) + x).flatten(1))


@pytest.mark.parametrize(("layer", "mode"), [("features.conv3", "position"),
                                             ("features.conv2", "pooled"),
                                             ("classifier.fc1", "flat")])
def test_edited_predictions_cut_the_model_and_match_the_hooked_model(small_cnn, layer, mode):
    """Computing the layers before the edited one once (the cut model) changes nothing:
    every prediction is the one of the whole model with the edit as a hook."""
    from shortcutlab.decompose.activations import (
        EditedPredictions,
        feature_edit,
        reconstruction_edit,
    )

    images = (torch.rand(50, 28, 28, 3, generator=torch.Generator().manual_seed(1))
              * 255).to(torch.uint8).numpy()
    vectors = collect_activations(small_cnn, layer, images, mode)
    sae = SparseAutoencoder(vectors.shape[1], vectors.shape[1] * 4)
    sae.fit_input_scale(vectors)
    runner = EditedPredictions(small_cnn, layer, batch_size=16)
    assert runner.split is not None
    hooked = EditedPredictions(small_cnn, layer, batch_size=16)
    rows = [3, 7, 8, 20, 41]
    boost = feature_edit(sae, mode, [FeatureEdit(f, 1.0, add=50.0 * (f + 1)) for f in range(8)]
                         + [FeatureEdit(9, 0.0)])
    for edit, chosen in ((None, None), (reconstruction_edit(sae, mode), None),
                         (boost, None), (boost, rows)):
        cut = runner.predict(images, edit, key="images", rows=chosen)
        whole = hooked.predict(images, edit, key=None, rows=chosen)
        assert cut.tolist() == whole.tolist()
    outputs = runner._activations["images"]
    with torch.no_grad():  # the edit reaches the rest of the model (the logits move)
        assert not torch.allclose(runner.split.after(boost(outputs)),
                                  runner.split.after(outputs))
    assert hook_count(small_cnn) == 0
    # the layers before the edit ran once for all four
    assert list(runner._activations) == ["images"]


def test_a_model_that_cannot_be_cut_runs_whole():
    from shortcutlab.decompose.activations import EditedPredictions
    from shortcutlab.models.split import split_at_layer

    torch.manual_seed(0)
    model = _SkipAcross().eval()
    assert split_at_layer(model, "conv") is None
    images = (torch.rand(6, 28, 28, 3) * 255).to(torch.uint8).numpy()
    runner = EditedPredictions(model, "conv")
    edit = lambda output: output * 0  # noqa: E731
    with torch.no_grad():
        expected = model.head(torch.zeros(6, 3 * 28 * 28)
                              + torch.from_numpy(images).permute(0, 3, 1, 2).float()
                              .div(255).flatten(1)).argmax(1)
    assert runner.predict(images, edit, key="images").tolist() == expected.tolist()


def test_vectors_round_trip_and_modes(small_cnn):
    output = torch.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)
    vectors = to_vectors(output, "position")
    assert vectors.shape == (8, 3)
    from shortcutlab.decompose.activations import from_vectors

    torch.testing.assert_close(from_vectors(vectors, output, "position"), output)
    assert resolve_mode(small_cnn, "features.conv3") == "position"
    assert resolve_mode(small_cnn, "classifier.fc1") == "flat"
    with pytest.raises(ShortcutlabError, match="conv layer"):
        resolve_mode(small_cnn, "classifier.fc1", "pooled")
    with pytest.raises(ShortcutlabError, match="does not exist"), \
            edited(small_cnn, SparseAutoencoder(16, 32), "features.conv3", "position",
                   [FeatureEdit(99)]):
        pass
    assert parse_edit("3=0") == FeatureEdit(3, 0.0)
    assert parse_edit("4+2.5") == FeatureEdit(4, 1.0, 2.5)
    with pytest.raises(ShortcutlabError):
        parse_edit("x")


def test_sae_cli_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "sae"
    assert main(["sae", "train", str(tiny_run), "--out", str(out), "--steps", "60",
                 "--images", "200", "--expansion", "4", "--threads", "1"]) == 0
    meta = json.loads((out / "sae.json").read_text())
    for key in ("r2", "l0", "dead_fraction", "accuracy"):
        assert key in meta
    assert meta["layer"] == "features.conv3" and meta["mode"] == "position"
    assert set(meta["accuracy"]["val"]) == {"original", "reconstructed", "agreement", "images"}
    val_images = len(load_split(meta["data_dir"], "val"))
    assert meta["accuracy"]["val"]["images"] == val_images  # the whole split by default
    assert (out / "sae_training.png").stat().st_size > 0

    assert main(["sae", "label", str(out), "--per-digit", "2", "--cards", "4",
                 "--threads", "1"]) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels["features"]) == meta["sae"]["d_hidden"]
    assert sum(labels["summary"].values()) == meta["sae"]["d_hidden"]
    assert (out / "feature_cards.png").is_file() or labels["summary"]["dead"] == len(
        labels["features"])

    assert main(["sae", "browse", str(out), "--features", "5", "--steps", "4",
                 "--threads", "1"]) == 0
    page = (out / "features.html").read_text()
    alive = [row for row in labels["features"] if row["label"] != "dead"]
    assert page.count('class="card"') == min(5, len(alive))
    assert page.count("data:image/png;base64,") == min(5, len(alive)) * (1 + 6)
    assert main(["sae", "intervene", str(out), "--strengths", "1,3", "--edit", "0=0",
                 "--split-images", "30", "--boost-images", "7", "--threads", "1"]) == 0
    result = json.loads((out / "intervene.json").read_text())
    splits = result["ablate_color_features"]["splits"]
    assert set(splits) == {"val", "test_easy", "test_hard"}
    for name, entry in splits.items():
        assert entry["images"] == min(30, len(load_split(meta["data_dir"], name)))
    assert result["boost_color_features"]["images_per_color"] == 7
    if not result["ablate_color_features"]["features"]:
        assert splits["test_hard"]["accuracy_after"] == splits["test_hard"]["accuracy_before"]
    assert result["custom"]["edits"] == [{"feature": 0, "scale": 0.0, "add": 0.0}]
    assert (out / "interventions.png").stat().st_size > 0
    assert "accuracy with the color features ablated" in capsys.readouterr().out
    assert meta["fidelity"]["ce_zero"] > 0 and "score" in meta["fidelity"]
    assert len(meta["density"]) == meta["sae"]["d_hidden"]
    assert (out / "sae_density.png").stat().st_size > 0

    # the same layer with another seed, then the features matched across the two
    again = tmp_path / "sae-seed1"
    assert main(["sae", "train", str(tiny_run), "--out", str(again), "--steps", "60",
                 "--images", "200", "--expansion", "4", "--threads", "1", "--seed", "1"]) == 0
    assert main(["sae", "stability", str(out), str(again), "--out", str(tmp_path / "st")]) == 0
    stable = json.loads((tmp_path / "st" / "stability.json").read_text())
    assert stable["alive"] == meta["sae"]["d_hidden"] - labels["summary"]["dead"]
    assert sum(row["n"] for row in stable["by_kind"].values()) == stable["alive"]
    assert 0 <= stable["recurring_alive"] <= stable["alive"]
    assert stable["strongest_recurring"] <= len(stable["strongest_per_color"]) <= 10
    assert main(["sae", "stability", str(out), "--out", str(tmp_path / "st")]) == 2


def test_matching_recovers_a_permuted_dictionary():
    from shortcutlab.decompose.stability import match_features

    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(40, 16, generator=generator)
    order = torch.randperm(40, generator=generator)
    other = reference[order] * 3.0 + 0.05 * torch.randn(40, 16, generator=generator)
    match, cosine = match_features(reference, other)
    assert (order[torch.from_numpy(match)] == torch.arange(40)).all()
    assert cosine.min() > 0.95
    unrelated = torch.randn(40, 16, generator=generator)
    assert np.median(match_features(reference, unrelated)[1]) < 0.9
    with pytest.raises(ShortcutlabError, match="different spaces"):
        match_features(reference, torch.randn(40, 8))


def test_sae_cli_reports_bad_input(tiny_run, tmp_path, capsys):
    assert main(["sae", "label", str(tmp_path)]) == 2
    assert "holds no SAE" in capsys.readouterr().err
    assert main(["sae", "train", str(tiny_run), "--out", str(tmp_path), "--layer",
                 "classifier.fc1", "--mode", "pooled"]) == 2
    assert "needs a conv layer" in capsys.readouterr().err
    assert main(["sae", "train", str(tiny_run), "--out", str(tmp_path), "--activation",
                 "topk", "--k", "0"]) == 2  # refused where the option is parsed
    assert "--k" in capsys.readouterr().err


def test_study_stages_probe_and_decompose_each_model_stage(tiny_run, tmp_path):
    import shutil

    from shortcutlab.study.config import load_config
    from shortcutlab.study.pipeline import Stage, run_pipeline
    from shortcutlab.study.probe import stage_probe
    from shortcutlab.study.sae import stage_sae

    def fake_lazy(ctx):
        shutil.copytree(tiny_run, ctx.out / "run")
        return {"run": "run"}

    stages = [Stage("lazy", fake_lazy), Stage("probe", stage_probe, inputs=("lazy",)),
              Stage("sae", stage_sae, inputs=("lazy",))]
    config = load_config(quick=True)
    config["probe"].update(steps=4, max_units=2, facet_units=1, logit_samples=1, per_digit=2,
                           exemplar_images=100, judge=False)
    config["sae"].update(steps=20, images=100, strengths=[2.0], per_digit=2)
    report = run_pipeline(tmp_path, stages, config, settings={"quick": True}, device="cpu")
    assert report.ran == ["lazy", "probe", "sae"]
    probe = report.results["probe"].summary["models"]["lazy"]
    assert 0.0 <= probe["dominant_color_match"] <= 1.0
    sae = report.results["sae"].summary["models"]["lazy"]
    assert {"r2", "l0", "dead_fraction", "hard_accuracy_color_ablated"} <= set(sae)
    for stage in ("probe", "sae"):
        for figure in report.results[stage].summary["figures"]:
            assert (tmp_path / stage / figure["path"]).is_file()


# -- SAELens' architectures and measures -------------------------------------------------------
def test_batch_topk_keeps_k_per_input_on_average_and_thresholds_at_inference():
    data = sparse_data()
    config = SAEConfig(expansion=4, activation="batchtopk", k=4, steps=400, batch_size=256,
                       lr=3e-3, resample_every=100)
    sae, _ = train_sae(data, config, show_progress=False)
    sae.train()
    codes = sae.encode(data[:256])
    assert int((codes > 0).sum()) <= 4 * 256
    per_input = (codes > 0).sum(1)
    assert int(per_input.max()) > int(per_input.min())  # inputs may use more or fewer
    sae.eval()
    assert float(sae.threshold) > 0
    metrics = sae_metrics(sae, sparse_data(seed=0)[:1000])
    assert metrics["r2"] > 0.7 and 1.0 <= metrics["l0"] <= 12.0


def test_jumprelu_learns_thresholds_and_its_l0_penalty_sparsifies():
    data = sparse_data()
    results = {}
    for l0_weight in (1e-4, 3e-2):
        config = SAEConfig(expansion=4, activation="jumprelu", l1=l0_weight, steps=400,
                           batch_size=256, lr=3e-3, resample_every=100)
        sae, _ = train_sae(data, config, show_progress=False)
        results[l0_weight] = (sae, sae_metrics(sae, sparse_data(seed=0)[:1000]))
    sae, loose = results[1e-4]
    _, tight = results[3e-2]
    assert loose["r2"] > 0.7
    assert tight["l0"] < loose["l0"]
    assert float((sae.log_threshold.exp() - 1e-3).abs().max()) > 1e-4  # thresholds moved


def test_topk_auxiliary_loss_trains_only_the_dead_features_on_the_residual():
    data = sparse_data(count=256)
    sae = SparseAutoencoder(16, 64, activation="topk", k=2)
    sae.fit_input_scale(data)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[10:20] = True
    _, _, none, _ = sae.losses(data)
    assert float(none) == 0.0  # no dead features, no auxiliary loss
    _, _, aux, _ = sae.losses(data, dead=dead, k_aux=4)
    assert float(aux) > 0
    aux.backward()
    reached = sae.W_enc.grad.abs().sum(0) > 0
    assert bool(reached[dead].any()) and not bool(reached[~dead].any())
    # and in training the term shows up once features have been idle long enough
    config = SAEConfig(expansion=16, activation="topk", k=1, steps=400, batch_size=256,
                       lr=3e-3, resample_every=0)
    _, history = train_sae(sparse_data(), config, show_progress=False)
    assert history[0]["aux"] == 0.0 and max(row["aux"] for row in history) > 0


def test_density_counts_dead_and_dense_features():
    data = sparse_data(count=400)
    sae = SparseAutoencoder(16, 32)
    sae.fit_input_scale(data)
    with torch.no_grad():
        sae.b_enc[:4] = -1e4  # never on
        sae.b_enc[4:8] = 1e4  # always on
    metrics = sae_metrics(sae, data)
    assert metrics["density"][:4] == [0.0] * 4 and metrics["density"][4:8] == [1.0] * 4
    assert metrics["dead_fraction"] >= 4 / 32 and metrics["dense_fraction"] >= 4 / 32


def test_fidelity_is_one_for_a_perfect_splice_and_lower_for_a_broken_one(small_cnn):
    from shortcutlab.decompose.activations import fidelity

    x = torch.rand(40, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (40,), generator=torch.Generator().manual_seed(1))
    layer = "features.conv3"
    vectors = collect_activations(small_cnn, layer, x, "position")
    sae = SparseAutoencoder(vectors.shape[1], vectors.shape[1] * 2)
    sae.fit_input_scale(vectors)
    # an exact code: identity encoder and decoder on the (scaled, centred) inputs
    dim = vectors.shape[1]
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        sae.W_enc[:, :dim] = torch.eye(dim)
        sae.W_enc[:, dim:] = -torch.eye(dim)
        sae.W_dec[:dim] = torch.eye(dim)
        sae.W_dec[dim:] = -torch.eye(dim)
    perfect = fidelity(small_cnn, sae, layer, "position", x, labels)
    assert perfect["score"] == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        sae.W_dec.mul_(0.3)  # a splice that keeps a third of the signal
    broken = fidelity(small_cnn, sae, layer, "position", x, labels)
    assert broken["score"] < 0.99
    assert broken["ce_clean"] == pytest.approx(perfect["ce_clean"])
    assert hook_count(small_cnn) == 0
