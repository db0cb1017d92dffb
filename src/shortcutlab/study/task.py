"""What one task of the study is: its stages, its headline numbers and its report section.

A task file (``study/data.py`` ... ``study/sae.py``) defines one :class:`Task` named
``TASK``; :mod:`shortcutlab.study.run` lists them. Task files never import each other:
what one task needs of another it reads from that stage's summary through the context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shortcutlab.study.pipeline import Stage
from shortcutlab.study.report.document import Section
from shortcutlab.study.report.frame import StudyArtifacts

Summaries = Mapping[str, dict[str, Any]]

ANALYZED_MODELS = ("lazy", "cured")
"""The study's model stages that Tasks 2 and 6 analyse, in report order."""


@dataclass(frozen=True)
class Task:
    """``key`` names the task in ``summary.json``'s headline (``task0`` ... ``task6``)."""

    key: str
    stages: tuple[Stage, ...]
    section: Callable[[StudyArtifacts], Section]
    headline: Callable[[Summaries], dict[str, Any] | None]


def dig(stages: Summaries, stage: str, *keys: str) -> Any:
    """``stages[stage][key][key]...``, or None where a level is missing."""
    value: Any = stages.get(stage, {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
