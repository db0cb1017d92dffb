"""TEA's loss, its teacher hand-over, and the LRP-based saliency guidance."""

from __future__ import annotations

import copy

import pytest
import torch

from shortcutlab import models
from shortcutlab.intervene.hparams import resolve_hparams
from shortcutlab.intervene.methods.saliency import outside_share, trainable_grad_cam
from shortcutlab.intervene.methods.tea import heat_loss, heatmap_distance
from shortcutlab.intervene.registry import get_method
from shortcutlab.train.algorithm import Batch, TrainContext

BATCH = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch(train_tensors, batch_of) -> Batch:
    return batch_of(train_tensors, BATCH)


def tea_with(teacher: torch.nn.Module, student: torch.nn.Module, tmp_path, tiny_data,
             **overrides):
    models.save(teacher, tmp_path / "teacher")
    hparams = resolve_hparams("tea", {"teacher": str(tmp_path / "teacher"), **overrides})
    algorithm = get_method("tea")(student, hparams)
    algorithm.setup(TrainContext(num_train=400, total_steps=10, device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(0), seed=0,
                                 data_dir=tiny_data))
    algorithm.train()
    return algorithm


def test_heat_loss_properties():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 28, 28, generator=generator)
    b = torch.randn(4, 3, 28, 28, generator=generator)
    assert float(heat_loss(a, a)) == 0.0
    # Invariant to rescaling both maps, and symmetric.
    torch.testing.assert_close(heat_loss(3 * a, 3 * b), heat_loss(a, b))
    torch.testing.assert_close(heat_loss(a, b), heat_loss(b, a))
    # A map that is right up to a pixel shift costs less at the coarse level than a wrong one.
    shifted = torch.roll(a, 1, dims=-1)
    assert float(heat_loss(a, shifted)) < float(heat_loss(a, b))
    # 28 px: the levels 28 and 14 (7 < 8 stops the pyramid).
    fine = heatmap_distance(a, b).mean()
    coarse = heatmap_distance(torch.nn.functional.avg_pool2d(a, 2),
                              torch.nn.functional.avg_pool2d(b, 2)).mean()
    torch.testing.assert_close(heat_loss(a, b), (fine + coarse) / 2)


def test_tea_loss_is_zero_when_student_and_teacher_are_the_same_network(tmp_path, tiny_data,
                                                                         batch):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16)
    # the student in the layout of the loaded teacher, as the trainer trains it: a layout
    # changes the convolution's summation order, hence the last bits
    student = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    algorithm = tea_with(teacher, student, tmp_path, tiny_data, init="default")
    stats = algorithm.update(batch, 0)
    assert stats["loss"] == 0.0


def test_tea_shares_and_freezes_the_last_layer_and_learns_the_heatmaps(tmp_path, tiny_data,
                                                                       batch):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16)
    torch.manual_seed(1)
    student = models.create("cnn3", width=4, hidden=16)
    algorithm = tea_with(teacher, student, tmp_path, tiny_data)
    fc2 = algorithm.model.classifier.fc2
    torch.testing.assert_close(fc2.weight, teacher.classifier.fc2.weight)
    assert not fc2.weight.requires_grad
    frozen = fc2.weight.detach().clone()
    conv = algorithm.model.features.conv1.weight.detach().clone()
    # Fixed explained classes and epsilons, so the losses of successive steps compare.
    algorithm.hparams["explain_prediction"] = 1.0
    algorithm.hparams["epsilon_low"] = algorithm.hparams["epsilon_high"] = 0.05
    losses = [algorithm.update(batch, step)["loss"] for step in range(12)]
    assert losses[-1] < 0.9 * losses[0], losses
    torch.testing.assert_close(algorithm.model.classifier.fc2.weight, frozen)
    assert not torch.equal(algorithm.model.features.conv1.weight, conv)
    for param in algorithm.teacher.parameters():
        assert param.grad is None  # the teacher is never trained


def test_tea_explains_the_teachers_prediction_at_the_set_rate(tmp_path, tiny_data):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16)
    algorithm = tea_with(teacher, copy.deepcopy(teacher), tmp_path, tiny_data, init="default",
                         explain_prediction=0.5)  # the reference's rate
    logits = torch.randn(4000, 10)
    targets = algorithm.explained_classes(logits)
    same = (targets == logits.argmax(1)).float().mean()
    assert 0.45 < float(same) < 0.55
    others = targets[targets != logits.argmax(1)]
    assert len(torch.unique(others)) == 10
    # The default explains the teacher's own prediction every time.
    always = tea_with(teacher, copy.deepcopy(teacher), tmp_path, tiny_data, init="default")
    assert torch.equal(always.explained_classes(logits), logits.argmax(1))
    epsilons = algorithm.epsilons(4000)
    assert float(epsilons.min()) >= 0.01 and float(epsilons.max()) <= 0.1
    # Log-uniform: the median is the geometric mean of the ends.
    assert abs(float(epsilons.median()) - 0.0316) < 0.004


def _step_with_two_teacher_passes(algorithm, images: torch.Tensor) -> torch.Tensor:
    """TEA's step as it was before the speed-ups: a plain forward to choose the explained
    classes, then a separate LRP pass, then the student's, whose heatmap is differentiated
    through every layer's own autograd backward (no direct products, no ReLU gate)."""
    from shortcutlab.explain import lrp
    from shortcutlab.explain.relevance import generic_backward
    from shortcutlab.intervene.methods.tea import heat_loss

    with torch.no_grad():
        targets = algorithm.explained_classes(algorithm.teacher(images))
    epsilon = algorithm.epsilons(images.shape[0])
    with generic_backward():
        teacher_map = lrp(algorithm.teacher, images, targets, rule="epsilon",
                          epsilon=epsilon).detach()
        student_map = lrp(algorithm.model, images, targets, rule="epsilon", epsilon=epsilon,
                          create_graph=True)
    teacher_map, student_map = teacher_map.sum(1), student_map.sum(1)
    return heat_loss(student_map, teacher_map, int(algorithm.hparams["min_size"]))


def test_tea_step_gives_the_same_loss_and_gradients_as_before_the_speed_ups(
        tmp_path, tiny_data, batch):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16).double()
    torch.manual_seed(1)
    student = models.create("cnn3", width=4, hidden=16).double()
    images = batch.images.double()
    runs = []
    for step in ("new", "old"):
        algorithm = tea_with(teacher, copy.deepcopy(student), tmp_path / step, tiny_data)
        algorithm.teacher.double()
        if step == "new":
            captured = {}
            algorithm.step_optimizer = lambda loss, keep=captured: keep.update(loss=loss) or \
                loss.backward()
            algorithm.update(Batch(images, batch.labels, batch.colors, batch.masks,
                                   batch.index), 0)
            loss = captured["loss"]
        else:
            loss = _step_with_two_teacher_passes(algorithm, images)
            loss.backward()
        grads = [p.grad.clone() for p in algorithm.model.parameters() if p.requires_grad]
        runs.append((loss.detach(), grads))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=0, atol=1e-12)
    for new, old in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(new, old, rtol=0, atol=1e-12)


def test_the_teachers_heatmap_builds_no_graph_and_reaches_no_teacher_weight(tmp_path,
                                                                            tiny_data, batch):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16)
    algorithm = tea_with(teacher, models.create("cnn3", width=4, hidden=16), tmp_path,
                         tiny_data)
    choose = algorithm.class_chooser(BATCH, 10)
    heatmap, targets = algorithm.teacher_heatmap(batch.images, choose,
                                                 algorithm.epsilons(BATCH))
    assert heatmap.grad_fn is None and not heatmap.requires_grad
    assert targets.shape == (BATCH,)
    algorithm.update(batch, 0)
    assert all(p.grad is None for p in algorithm.teacher.parameters())


def test_tea_starts_the_student_he_initialized(tmp_path, tiny_data):
    torch.manual_seed(0)
    teacher = models.create("cnn3", width=4, hidden=16)
    student = models.create("cnn3", width=4, hidden=16)
    default = copy.deepcopy(student.features.conv2.weight)
    algorithm = tea_with(teacher, student, tmp_path, tiny_data)
    weight = algorithm.model.features.conv2.weight
    assert not torch.equal(weight, default)
    fan_in = weight[0].numel()
    assert abs(float(weight.detach().std()) - (2.0 / fan_in) ** 0.5) < 0.35 * (2.0 / fan_in) ** 0.5
    assert float(algorithm.model.features.conv2.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("attribution", ["lrp", "gradcam"])
def test_saliency_guide_lowers_the_outside_share(attribution, tiny_data, batch):
    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    hparams = resolve_hparams("saliency-guide", {"attribution": attribution, "penalty": 10.0,
                                                 "lr": 0.01})
    algorithm = get_method("saliency-guide")(model, hparams)
    algorithm.setup(TrainContext(num_train=400, total_steps=10, device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(0)))
    shares = [algorithm.update(batch, step)["outside_share"] for step in range(12)]
    assert shares[-1] < shares[0], shares


def test_trainable_grad_cam_matches_the_explain_stage(batch):
    from shortcutlab.explain import grad_cam

    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    cam, logits = trainable_grad_cam(model, batch.images, batch.labels)
    expected = grad_cam(model, batch.images, batch.labels, upsample=False)
    torch.testing.assert_close(cam.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits.detach(), model(batch.images))
    assert cam.requires_grad  # unlike the explain stage's, it trains the model


def test_outside_share_is_the_explain_stages_background_share(batch):
    from shortcutlab.explain import background_share

    heatmap = torch.rand(BATCH, 3, 28, 28) - 0.3
    torch.testing.assert_close(outside_share(heatmap, batch.masks).double(),
                               background_share(heatmap, batch.masks), rtol=1e-5, atol=1e-6)
