"""On a CUDA GPU: every stage keeps its tensors there and agrees with the CPU.

Skipped without a GPU; ``benchmarks/gpu.sh`` runs them (``pytest -m cuda``) beside the
GPU study and the GPU benchmarks.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")


def _parameters_on(model: torch.nn.Module, device_type: str) -> bool:
    return all(p.device.type == device_type for p in model.parameters())


def test_a_run_trains_on_the_gpu_and_loads_back_anywhere(tiny_data, tmp_path):
    from shortcutlab import models
    from shortcutlab.api import train_run

    metrics = train_run(tiny_data, tmp_path / "run", preset="lazy", steps=20, device="cuda")
    assert 0.0 <= metrics["easy_val"] <= 1.0
    assert _parameters_on(models.load(tmp_path / "run", CUDA), "cuda")
    assert _parameters_on(models.load(tmp_path / "run", "cpu"), "cpu")


def test_heatmaps_on_the_gpu_equal_the_cpus(small_cnn):
    from shortcutlab.explain import grad_cam, lrp

    x = torch.rand(8, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    target = torch.arange(8) % 10
    gpu_model = small_cnn.to(CUDA)
    for method in (grad_cam, lrp):
        on_gpu = method(gpu_model, x.to(CUDA), target.to(CUDA))
        assert on_gpu.device.type == "cuda"
        on_cpu = method(small_cnn.to("cpu"), x, target)
        assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-3)
        gpu_model = small_cnn.to(CUDA)


def test_the_minimal_epsilon_search_runs_on_the_gpu(trained, tiny_data):
    from shortcutlab.attack import minimal_epsilon
    from shortcutlab.data import load_split

    x = load_split(tiny_data, "test_hard").image_tensor()[:8]
    found = minimal_epsilon(trained.to(CUDA), x.to(CUDA), 3, 0.9, steps=10, precision=0.01)
    assert found.adversarial.device.type == "cuda"
    ok = found.found
    assert (found.adversarial.cpu() - x).abs().amax(dim=(1, 2, 3))[torch.from_numpy(ok)].le(
        torch.from_numpy(found.eps[ok]).float() + 1e-5).all()


def test_the_explorer_answers_on_the_gpu(tiny_data, tiny_run):
    from shortcutlab.explore import Explorer, ImageSpec

    explorer = Explorer(tiny_data, {"run": tiny_run}, device="cuda")
    assert _parameters_on(explorer.models["run"].model, "cuda")
    result = explorer.analyze(ImageSpec("test_hard", 0, color=2))
    assert sum(result["models"]["run"]["probs"]) == pytest.approx(1.0, abs=1e-4)
    x, _, _ = explorer.image(ImageSpec("test_hard", 0))
    assert explorer.attack(x, "run", 3, 0.05)["linf"] <= 0.05 + 1e-6
