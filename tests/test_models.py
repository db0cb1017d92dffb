"""The model zoo: shapes, hookability (no reused or in-place modules), registry round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shortcutlab import models
from shortcutlab.errors import ShortcutlabError

# small widths keep the tests fast; the defaults are checked for shape only on cnn3
SMALL = {
    "cnn3": {"width": 4, "hidden": 16},
    "cnn2fc3": {"width": 4, "hidden": 16, "hidden2": 8},
    "mlp": {"hidden": 16},
    "resnet18": {"width": 4},
    "simpleconv": {"kernel_size": 3, "widths": [4, 4, 8, 8]},
}


def test_every_registered_model_is_covered():
    assert set(models.list_models()) >= {"cnn3", "cnn2fc3", "mlp", "resnet18"}
    assert set(SMALL) == set(models.list_models())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_shape_and_pixel_space_input(name):
    torch.manual_seed(0)
    model = models.create(name, **SMALL[name]).eval()
    x = torch.rand(3, 3, 28, 28)
    out = model(x)
    assert out.shape == (3, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_models_are_hookable(name):
    model = models.create(name, **SMALL[name]).eval()
    seen = [id(m) for _, m in model.named_modules(remove_duplicate=False)]
    assert len(seen) == len(set(seen)), "a module object is used at two places"
    for module in model.modules():
        assert not getattr(module, "inplace", False), f"{module} works in place"
    leaves = {name: m for name, m in model.named_modules() if not list(m.children())}
    calls: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: calls.__setitem__(
        n, calls.get(n, 0) + 1)) for n, m in leaves.items()]
    model(torch.rand(2, 3, 28, 28)).sum()
    for handle in handles:
        handle.remove()
    assert calls == dict.fromkeys(leaves, 1), "every leaf module runs exactly once"
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus, "activations are modules"


def test_cnn3_keeps_its_layer_names_and_default_size():
    model = models.create("cnn3")
    for layer in ("features.conv1", "features.conv2", "features.conv3", "classifier.fc1",
                  "classifier.fc2"):
        models.get_layer(model, layer)
    assert models.last_conv(model)[0] == "features.conv3"
    assert sum(p.numel() for p in model.parameters()) > 100_000  # a standard CNN, not a toy


def test_resnet18_has_eighteen_weight_layers_and_a_usable_last_conv():
    model = models.create("resnet18", width=4)
    convs = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and "downsample" not in n]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 18
    assert models.last_conv(model)[0] == "features.layer4.1.conv2"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_registry_round_trip(tmp_path, name):
    torch.manual_seed(1)
    model = models.create(name, **SMALL[name]).eval()
    if name in ("resnet18", "simpleconv"):  # give batch-norm non-trivial running statistics
        model.train()
        model(torch.rand(8, 3, 28, 28))
        model.eval()
    models.save(model, tmp_path)
    loaded = models.load(tmp_path)
    x = torch.rand(4, 3, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert not loaded.training and loaded.spec == model.spec


def test_saved_bytes_do_not_depend_on_memory_format(tmp_path):
    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    models.save(model, tmp_path / "a")
    models.save(model.to(memory_format=torch.channels_last), tmp_path / "b")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_bad_model_arguments_are_reported():
    with pytest.raises(ShortcutlabError, match="cnn2fc3"):
        models.create("cnn2fc3", depth=3)


def test_simpleconv_is_rebias_network():
    model = models.create("simpleconv")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert all(c.kernel_size == (7, 7) and c.padding == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert models.create("simpleconv", kernel_size=1)(torch.rand(2, 3, 28, 28)).shape == (2, 10)
    with pytest.raises(ShortcutlabError, match="kernel_size"):
        models.create("simpleconv", kernel_size=4)


def test_mlp_input_scale_is_lffs_double_division():
    torch.manual_seed(0)
    plain = models.create("mlp", hidden=16, depth=3)
    scaled = models.create("mlp", hidden=16, depth=3, input_scale=1 / 255)
    scaled.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 28, 28)
    torch.testing.assert_close(scaled(x), plain(x / 255))


def _saved(tmp_path):
    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    models.save(model, tmp_path)
    return tmp_path / "model.json"


def test_a_model_file_that_does_not_fit_its_weights_is_named(tmp_path):
    import json

    meta_path = _saved(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["kwargs"] = {"width": 8, "hidden": 16}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ShortcutlabError, match="do not fit a cnn3"):
        models.load(tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta.pop("sha256"), "no sha256"),
    (lambda meta: meta.update(weights="../elsewhere/model.pt"), "outside its directory"),
])
def test_model_files_must_carry_a_checksum_and_keep_their_weights_inside(tmp_path, change,
                                                                         message):
    import json

    meta_path = _saved(tmp_path)
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ShortcutlabError, match=message):
        models.load(tmp_path)


def test_a_pickle_with_code_is_refused_without_advice_to_trust_it(tmp_path):
    import hashlib
    import json
    import pickle

    from shortcutlab.errors import ChecksumError

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    meta_path = _saved(tmp_path)
    weights = tmp_path / "model.pt"
    torch.save({"x": Payload()}, weights, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ChecksumError, match="never loads") as caught:
        models.load(tmp_path)
    assert "weights_only" not in str(caught.value)
