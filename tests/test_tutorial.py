"""docs/tutorial.ipynb runs from top to bottom, draws its figures and tells the truth.

The suite runs it on the synthetic source (offline); users run it on MNIST.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def _generator():
    spec = importlib.util.spec_from_file_location("make_tutorial",
                                                  ROOT / "scripts" / "make_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebook_is_what_its_script_writes():
    written = nbformat.read(NOTEBOOK, as_version=4)
    built = _generator().build()
    assert [c.source for c in written.cells] == [c.source for c in built.cells], \
        "docs/tutorial.ipynb is stale: run python scripts/make_tutorial.py"
    assert all(not c.get("outputs") for c in written.cells if c.cell_type == "code")


def test_the_imports_are_the_public_api():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    imports = re.findall(r"from (shortcutlab[\w.]*) import", "\n".join(
        c.source for c in notebook.cells if c.cell_type == "code"))
    assert imports and set(imports) == {"shortcutlab.api"}


@pytest.mark.slow
def test_the_tutorial_runs_and_its_story_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_TUTORIAL_SOURCE", "synthetic")
    monkeypatch.setenv("SHORTCUTLAB_TUTORIAL_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("SHORTCUTLAB_PROGRESS", "0")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(figures) == 3  # the dataset, the heatmaps, the attack
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")
    lazy_hard = float(re.search(r"easy [\d.]+%\s+hard ([\d.]+)%", text).group(1))
    cured_hard = float(re.search(r"cured: easy val [\d.]+%\s+hard ([\d.]+)%", text).group(1))
    assert lazy_hard < 20.0 and cured_hard > 70.0  # Task 1's bar and Task 4's target
    medians = dict(re.findall(r"(lazy|cured): median minimal epsilon ([\d.]+|inf)", text))
    assert float(medians["cured"]) < float(medians["lazy"])
