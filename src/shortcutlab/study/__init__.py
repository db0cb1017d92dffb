"""The study: the seven tasks of the Lazy Artist study wired into one resumable pipeline.

One file per task (``data``, ``train``, ``probe``, ``explain``, ``cured``, ``attack``,
``sae``) holds its stage, the summary it writes and its report section; :mod:`.run` lists
them; :mod:`.pipeline` keys and resumes stages; :mod:`.config` reads ``study.toml``;
:mod:`.report` writes the HTML report. The library packages never import this wing.

The public names are loaded on first use, so that ``shortcutlab --help`` (which imports
the study's command module) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "STAGES": "run", "TASKS": "run", "build_report": "run", "run_study": "run",
    "study_headline": "run", "load_config": "config", "render_config": "config",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"shortcutlab.study.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'shortcutlab.study' has no attribute {name!r}")
