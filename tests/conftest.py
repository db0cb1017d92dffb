"""Shared fixtures: a tiny synthetic dataset and small models, built once per session."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from shortcutlab.allocator import tune_allocator

os.environ.setdefault("SHORTCUTLAB_PROGRESS", "0")
tune_allocator()  # as the CLI does
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_LIMIT = 400

if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, str(Path(__file__).parent / "stubs"))
if importlib.util.find_spec("git") is None:  # Foolbox imports GitPython for its model zoo
    sys.path.insert(0, str(Path(__file__).parent / "stubs-git"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic Colored-MNIST dataset with 400 images per split (default style)."""
    from shortcutlab.data import BuildConfig, build_dataset, load_source

    out = tmp_path_factory.mktemp("tiny_data")
    config = BuildConfig(source="synthetic", limit=TINY_LIMIT)
    build_dataset(config, out, load_source("synthetic", limit=TINY_LIMIT))
    return out


@pytest.fixture
def small_cnn() -> torch.nn.Module:
    from shortcutlab import models

    torch.manual_seed(0)
    return models.create("cnn3", width=4, hidden=16).eval()


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a whole test module, its module fixtures included (request it
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``): the models and tensors of
    the tests are tiny, so a second thread gains nothing and thread-pool stalls on a busy
    machine cost a lot."""
    with _threads(1):
        yield


def _train_tiny(data_dir: Path, steps: int = 200, seed: int = 0) -> torch.nn.Module:
    """A small cnn3 trained with plain cross-entropy on random batches of 32 of the train
    split, returned in eval mode."""
    from shortcutlab import models
    from shortcutlab.data import load_split

    split = load_split(data_dir, "train")
    x, y = split.image_tensor(), torch.from_numpy(split.labels)
    torch.manual_seed(seed)
    model = models.create("cnn3", width=4, hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, len(y), (32,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(tiny_data: Path, train_tiny: Callable[..., torch.nn.Module]) -> torch.nn.Module:
    """The attack tests' victim: :func:`_train_tiny` on tiny_data (one per test module)."""
    return train_tiny(tiny_data)


@pytest.fixture(scope="session")
def train_tiny() -> Callable[..., torch.nn.Module]:
    """Factory: ``train_tiny(data_dir, steps=200, seed=0)``, a small cnn3 trained with
    plain cross-entropy (see :func:`_train_tiny`)."""
    return _train_tiny


@pytest.fixture(scope="module")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cnn3 trained full-batch for 40 steps on tiny_data, saved as a run directory
    whose config.json points at tiny_data (one per test module)."""
    from shortcutlab import models
    from shortcutlab.data import load_split

    torch.manual_seed(0)
    model = models.create("cnn3", width=4, hidden=16)
    train = load_split(tiny_data, "train").tensors()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(train["images"]), train["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run = tmp_path_factory.mktemp("run")
    models.save(model, run)
    (run / "config.json").write_text(json.dumps({"data_dir": str(tiny_data)}))
    return run


@pytest.fixture(scope="module")
def train_tensors(tiny_data: Path) -> dict[str, torch.Tensor]:
    """The tiny dataset's train split as tensors (a fresh copy per test module)."""
    from shortcutlab.data import load_split

    return load_split(tiny_data, "train").tensors()


def _batch_of(tensors: dict[str, torch.Tensor], size: int):
    from shortcutlab.train.algorithm import Batch

    index = torch.arange(size)
    return Batch(tensors["images"][index], tensors["labels"][index], tensors["colors"][index],
                 tensors["masks"][index], index)


@pytest.fixture(scope="session")
def batch_of() -> Callable[..., Any]:
    """Factory: ``batch_of(tensors, size)``, the first ``size`` items of split tensors as a
    training :class:`~shortcutlab.train.algorithm.Batch`."""
    return _batch_of


def _assert_resumes_exactly(build: Callable[[], Any], batch: Any,
                            parts: tuple[str, ...] = ("model",)) -> None:
    """One step of a fresh algorithm, its training state copied into a second one, then
    one more step of each: every network in ``parts`` ends the same in both."""
    first = build()
    first.update(batch, 0)
    second = build()
    second.load_training_state(copy.deepcopy(first.training_state()))
    first.update(batch, 1)
    second.update(batch, 1)
    for part in parts:
        resumed = getattr(second, part).state_dict()
        for key, value in getattr(first, part).state_dict().items():
            assert torch.allclose(value, resumed[key]), f"{part}.{key}"


@pytest.fixture(scope="session")
def assert_resumes_exactly() -> Callable[..., None]:
    """``assert_resumes_exactly(build, batch, parts)``: an algorithm restored from its
    training state takes the same next step as the one it was saved from."""
    return _assert_resumes_exactly


POSTGRES_URL_FILE = Path(__file__).resolve().parent.parent / ".services" / "postgres.url"


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The URL of the throwaway PostgreSQL server ``scripts/services.sh start`` runs."""
    from shortcutlab.sweep.storage import normalize_url

    if os.environ.get("SHORTCUTLAB_SKIP_POSTGRES") == "1":
        pytest.skip("SHORTCUTLAB_SKIP_POSTGRES=1")
    if not POSTGRES_URL_FILE.is_file():
        pytest.fail(f"no PostgreSQL test server: {POSTGRES_URL_FILE} is missing. Start it with "
                    "`scripts/services.sh start` (make test does), or set "
                    "SHORTCUTLAB_SKIP_POSTGRES=1 to skip these tests", pytrace=False)
    url = POSTGRES_URL_FILE.read_text().strip()
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(normalize_url(url))
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"the PostgreSQL test server at {url} does not answer ({exc.orig}); "
                    "restart it with `scripts/services.sh start`", pytrace=False)
    return url
