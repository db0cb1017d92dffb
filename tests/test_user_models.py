"""A user's own network through every stage: ``--model module:factory`` and entry points.

The network sits in a file of its own (``tests/user_models/usernet.py``: BatchNorm,
in-place ReLUs, functional calls, a residual block, no Flatten module), copied into a
working directory the way a user keeps it beside the command.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from shortcutlab import models
from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError

pytestmark = pytest.mark.usefixtures("one_thread")

USER_FILE = Path(__file__).parent / "user_models" / "usernet.py"


def _forget_usernet() -> None:
    sys.modules.pop("usernet", None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding usernet.py, made the current directory for the module."""
    here = tmp_path_factory.mktemp("user_work")
    shutil.copy(USER_FILE, here / "usernet.py")
    patch = pytest.MonkeyPatch()
    patch.chdir(here)
    saved_path = list(sys.path)
    _forget_usernet()
    yield here
    patch.undo()
    sys.path[:] = saved_path
    _forget_usernet()


@pytest.fixture(scope="module")
def user_run(workdir, tiny_data):
    code = main(["train", "--data", str(tiny_data), "--out", str(workdir / "run"),
                 "--model", "usernet:build", "--model-arg", "width=6", "--preset", "standard",
                 "--steps", "40", "--threads", "1"])
    assert code == 0
    return workdir / "run"


def test_train_records_the_factory_and_load_rebuilds_it(user_run, workdir):
    meta = json.loads((user_run / "model.json").read_text())
    assert meta["name"] == "usernet:build" and meta["kwargs"] == {"width": 6}
    assert Path(meta["module_file"]) == (workdir / "usernet.py").resolve()
    model = models.load(user_run)
    assert type(model).__name__ == "UserNet" and model.stem.out_channels == 6
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 10)


def test_load_finds_the_module_from_another_directory(user_run, workdir, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(workdir))])
    _forget_usernet()
    model = models.load(user_run)  # from the folder model.json recorded
    assert type(model).__name__ == "UserNet"


def test_a_changed_module_is_rebuilt_with_a_warning(user_run, workdir, monkeypatch):
    copy = workdir / "edited"
    shutil.copytree(user_run, copy, dirs_exist_ok=True)
    meta = json.loads((copy / "model.json").read_text())
    meta["module_sha256"] = "0" * 64
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="changed since"):
        models.load(copy)


def test_every_stage_runs_on_the_user_model(user_run, workdir, tiny_data):
    data = str(tiny_data)
    assert main(["evaluate", str(user_run), "--data", data, "--swap-images", "50"]) == 0
    assert (user_run / "evaluate" / "evaluate.json").is_file()
    for method in ("gradcam", "lrp"):
        out = workdir / f"explain-{method}"
        assert main(["explain", str(user_run), "--data", data, "--method", method,
                     "--out", str(out), "--limit", "16", "--sanity-images", "4",
                     "--examples", "2", "--faithfulness", "4", "--removal-steps", "2"]) == 0
        report = json.loads((out / "explain.json").read_text())
        splits = report["models"]["model"]["splits"].values()
        shares = [split["background_share"]["mean"] for split in splits]
        assert all(0.0 <= share <= 1.0 for share in shares)
    assert main(["attack", str(user_run), "--data", data, "--split", "test_easy",
                 "--limit", "4", "--steps", "3", "--out", str(workdir / "attack")]) == 0
    assert (workdir / "attack" / "attack.json").is_file()
    assert main(["sae", "train", str(user_run), "--data", data, "--out", str(workdir / "sae"),
                 "--steps", "30", "--images", "200"]) == 0
    sae_report = json.loads((workdir / "sae" / "sae.json").read_text())
    assert sae_report["layer"] == "block.conv2"  # the last convolution, found by itself
    assert main(["intervene", "--method", "rrr", "--data", data, "--out",
                 str(workdir / "rrr"), "--model", "usernet:build", "--model-arg", "width=6",
                 "--set", "epochs=1"]) == 0
    rrr = json.loads((workdir / "rrr" / "model.json").read_text())
    assert rrr["name"] == "usernet:build" and rrr["kwargs"] == {"width": 6}


def test_lrp_on_the_user_model_matches_zennit(workdir):
    """zennit sees only modules, so its reference copy spells the residual addition as
    its Sum layer (our plain ``+`` splits relevance in proportion, as Sum's Norm rule
    does) and every ReLU as not in-place; BatchNorm's eps is 0 because zennit's merge
    leaves a BatchNorm dividing by sqrt(1 + eps)."""
    pytest.importorskip("zennit")
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.types import Activation, Convolution, Linear

    from shortcutlab.explain import lrp

    model = models.create("usernet:build", width=4).double()
    with torch.no_grad():  # BatchNorm statistics away from the identity
        model.train()
        model(torch.rand(64, 3, 28, 28, dtype=torch.float64))
    model.eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.0
    x = torch.rand(3, 3, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 4, 7])
    ours = lrp(model, x, target, epsilon=0.01)
    assert model.act.inplace is True  # in-place ReLUs are switched off only during the call

    reference_model = copy.deepcopy(model)
    block = reference_model.block
    block.sum = Sum()

    def block_forward(x: torch.Tensor) -> torch.Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        return torch.nn.functional.relu(block.sum(torch.stack([out, x], dim=-1)))

    block.forward = block_forward
    for module in reference_model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    composite = LayerMapComposite(
        [(Activation, Pass()), (Sum, Norm(1e-14)), (Convolution, Epsilon(0.01)),
         (Linear, Epsilon(0.01))], canonizers=[SequentialMergeBatchNorm()])
    with Gradient(model=reference_model, composite=composite) as attributor:
        _, reference = attributor(
            x.clone(), lambda out: out * torch.nn.functional.one_hot(target, 10).to(out))
    assert float(reference.abs().max()) > 0
    assert (ours - reference).abs().max() < 1e-9 * float(reference.abs().max())


def test_a_model_hiding_a_nonlinearity_from_lrp_is_refused_before_any_work(
        workdir, tiny_data, user_run, capsys):
    from shortcutlab.explain import lrp

    gated = models.create("usernet:gated", width=4).eval()
    with pytest.raises(ShortcutlabError, match=r"torch\.sigmoid in 'GatedNet\.forward'"):
        lrp(gated, torch.rand(2, 3, 28, 28))
    out = workdir / "gated-saliency"
    code = main(["intervene", "--method", "saliency-guide", "--data", str(tiny_data),
                 "--out", str(out), "--model", "usernet:gated", "--set", "epochs=1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "torch.sigmoid" in error and "GatedNet.forward" in error
    assert "nn.ReLU" in error  # what to change
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written
    # a method without rules takes the same model
    assert main(["intervene", "--method", "saliency-guide", "--data", str(tiny_data),
                 "--out", str(out), "--model", "usernet:gated", "--set", "epochs=1",
                 "--set", "attribution=gradcam"]) == 0


def test_functional_layers_with_their_own_parameters_are_named(workdir):
    from torch import nn

    from shortcutlab.explain import lrp

    class Hidden(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(10, 3 * 28 * 28) * 0.01)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x.flatten(1), self.weight)

    with pytest.raises(ShortcutlabError, match="own parameters"):
        lrp(Hidden(), torch.rand(1, 3, 28, 28))


@pytest.mark.parametrize("name, message", [
    ("nosuchmodule:build", "no module named 'nosuchmodule'"),
    ("usernet:nothing", "callables are: .*build"),
    ("usernet:torch", "not a function or class"),
    ("nosuchname", "package.module:factory"),
])
def test_bad_model_names_say_what_to_do(workdir, name, message):
    with pytest.raises(ShortcutlabError, match=message):
        models.create(name)


def test_a_model_without_convolutions_asks_for_a_layer(workdir):
    with pytest.raises(ShortcutlabError, match=r"pass --layer NAME .*fc1"):
        models.last_conv(models.create("mlp"))


def test_entry_points_publish_model_names(workdir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "usermodels-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: usermodels\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[shortcutlab.models]\nusernet = usernet:build\n")
    monkeypatch.syspath_prepend(str(site))
    assert "usernet" in models.list_models()
    model = models.create("usernet", width=4)
    assert type(model).__name__ == "UserNet" and model.spec["name"] == "usernet"
    run = tmp_path / "saved"
    models.save(model, run)
    assert type(models.load(run)).__name__ == "UserNet"
