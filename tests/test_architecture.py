"""The layering rules of docs/architecture.md, read from the source tree's imports.

- A library module (every module outside ``shortcutlab/study/`` except the thin
  ``cli.py`` and the ``api.py`` facade, which re-export it) never imports the study wing.
- A task file of the study never imports another task file.
- No library package holds a ``stage.py``: stages live in the study wing.
- The packages form layers (:data:`LAYERS`): a module imports only its own layer and the
  layers below, with the one lazy exception the docs name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
STUDY = "shortcutlab.study"
ENTRY_POINTS = {"shortcutlab.cli", "shortcutlab.__main__", "shortcutlab.api"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code, relative imports resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(root: Path, task_modules: set[str]) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        imports = imported_modules(path, root)
        in_study = name == STUDY or name.startswith(STUDY + ".")
        if not in_study and name not in ENTRY_POINTS:
            bad = sorted(m for m in imports if m == STUDY or m.startswith(STUDY + "."))
            if bad:
                problems.append(f"library module {name} imports the study: {', '.join(bad)}")
            if path.name == "stage.py":
                problems.append(f"{name}: stages belong in the study wing, not a library")
        if name in task_modules:
            bad = sorted(imports & (task_modules - {name}))
            if bad:
                problems.append(f"task file {name} imports task file(s) {', '.join(bad)}")
    return problems


LAYERS = (
    {"shortcutlab", "errors", "artifacts", "registry", "runtime", "allocator", "progress",
     "figures",
     "arguments", "settings"},
    {"data"},
    {"models", "hooks"},
    {"train"},
    {"probe", "explain", "attack"},
    {"decompose", "intervene"},
    {"sweep", "explore"},
    {"protocols"},
    {"study"},
    {"cli", "__main__", "api"},
)
# The trainer's algorithm registry imports the interventions on its first lookup, so that a
# run can name "jtt" without importing shortcutlab.intervene first (an import at call time).
# The intervention table runs its grid as trials of the sweep machinery, imported when it
# trains (as `benchmark` does), so that `intervene --all` scales out the same way.
LAZY_UPWARD = {("shortcutlab.train.algorithm", "intervene"),
               ("shortcutlab.intervene.table", "sweep")}


def layer_of(module: str) -> int:
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "shortcutlab"
    if part == "__version__":
        part = "shortcutlab"
    return next(index for index, names in enumerate(LAYERS) if part in names)


def layer_violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        own = layer_of(name)
        for imported in sorted(imported_modules(path, root)):
            if imported.split(".")[0] != "shortcutlab":
                continue
            if layer_of(imported) > own and (name, imported.split(".")[1]) not in LAZY_UPWARD:
                problems.append(f"{name} (layer {own}) imports {imported} "
                                f"(layer {layer_of(imported)})")
    return problems


def test_the_packages_import_only_their_own_layer_and_those_below():
    assert layer_violations(SOURCE) == []


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    root = tmp_path / "src"
    (root / "shortcutlab" / "data").mkdir(parents=True)
    (root / "shortcutlab" / "data" / "bad.py").write_text("from shortcutlab.train import x\n")
    assert layer_violations(root) == [
        "shortcutlab.data.bad (layer 1) imports shortcutlab.train (layer 3)",
        "shortcutlab.data.bad (layer 1) imports shortcutlab.train.x (layer 3)"]


def task_modules() -> set[str]:
    from shortcutlab.study.run import TASKS

    modules = {task.section.__module__ for task in TASKS}
    assert len(modules) == len(TASKS) == 7  # one file per task
    return modules


def test_the_source_tree_keeps_the_layering_rules():
    assert violations(SOURCE, task_modules()) == []


@pytest.mark.parametrize("module, line, expected", [
    ("shortcutlab/attack/extra.py", "from shortcutlab.study.pipeline import Stage",
     "library module shortcutlab.attack.extra imports the study"),
    ("shortcutlab/probe/extra.py", "import shortcutlab.study",
     "library module shortcutlab.probe.extra imports the study"),
    ("shortcutlab/explain/extra.py", "def late():\n    from shortcutlab import study",
     "library module shortcutlab.explain.extra imports the study"),
    ("shortcutlab/train/stage.py", "x = 1", "stages belong in the study wing"),
    ("shortcutlab/study/probe.py", "from shortcutlab.study.cured import choose",
     "task file shortcutlab.study.probe imports task file(s) shortcutlab.study.cured"),
    ("shortcutlab/study/sae.py", "from . import attack",
     "task file shortcutlab.study.sae imports task file(s) shortcutlab.study.attack"),
])
def test_the_rules_catch_a_module_that_breaks_them(tmp_path, module, line, expected):
    import shutil

    root = tmp_path / "src"
    shutil.copytree(SOURCE / "shortcutlab", root / "shortcutlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = root / module
    target.write_text((target.read_text() if target.exists() else "") + "\n" + line + "\n")
    found = violations(root, task_modules())
    assert len(found) == 1 and expected in found[0], found
