"""A published Colored-MNIST protocol as data: its dataset, recipe, metric and numbers.

Each protocol is one TOML file in ``shortcutlab/protocols/data`` (``lff-cmnist``,
``rebias-biased-mnist``, ``shortcutlab``): how its dataset is built (the fields of
:class:`shortcutlab.data.BuildConfig`, with ``bias = 1 - ratio`` for each conflicting
ratio of its grid), its model, optimizer, schedule and epochs, its metric and checkpoint
rule, the input scalings it offers, the settings a method needs to run as its paper ran
it, the methods it cannot run (and why), its published numbers with their sources, and
every way our implementation differs from the original. Adding a protocol is one new
file there.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from shortcutlab.errors import ShortcutlabError

DATA_PACKAGE = "shortcutlab.protocols.data"
SELECTIONS = ("last", "best-val")


@dataclass(frozen=True)
class Published:
    """One published row: a method's numbers at the protocol's ratios, and their source."""

    method: str
    label: str
    values: tuple[float, ...]
    source: str
    bias_labels: str = "no"
    selection: str = "not stated"

    def at(self, ratios: tuple[float, ...], ratio: float) -> float | None:
        """The published number at ``ratio`` (in %), or None when the paper has none."""
        for known, value in zip(ratios, self.values, strict=False):
            if math.isclose(known, ratio):
                return value
        return None


@dataclass(frozen=True)
class Scaling:
    name: str
    model_kwargs: dict[str, Any]
    text: str


@dataclass(frozen=True)
class Protocol:
    """A published protocol (see the module docstring); built by :func:`get_protocol`."""

    name: str
    title: str
    paper: str
    code: str
    summary: str
    ratios: tuple[float, ...]
    metric: str
    metric_text: str
    selection: str
    selection_text: str
    methods: tuple[str, ...]
    dataset: dict[str, Any]
    model: str
    model_kwargs: dict[str, Any]
    trainer: dict[str, Any]
    scalings: dict[str, Scaling]
    default_scaling: str
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)
    published: tuple[Published, ...] = ()
    deviations: tuple[str, ...] = ()
    second_metric: str | None = None  # shown beside the metric: what the published numbers
    second_metric_text: str = ""      # may measure instead (the table says which fits)

    def check_ratios(self, ratios: list[float] | None) -> tuple[float, ...]:
        """``ratios`` (or all of the protocol's), each one of the protocol's own."""
        if not ratios:
            return self.ratios
        unknown = [r for r in ratios if not any(math.isclose(r, k) for k in self.ratios)]
        if unknown:
            raise ShortcutlabError(
                f"{self.name} has no conflicting ratio {', '.join(f'{r:g}' for r in unknown)}; "
                f"its ratios are {', '.join(f'{r:g}' for r in self.ratios)}")
        return tuple(ratios)

    def check_methods(self, methods: list[str] | None) -> tuple[str, ...]:
        """``methods`` (or the protocol's default list), each a registered training
        algorithm that this protocol can run."""
        from shortcutlab.train.algorithm import list_algorithms

        chosen = tuple(methods) if methods else self.methods
        known = [name for name in list_algorithms() if name not in ("erm-control", "teacher")]
        for name in chosen:
            if name in self.unsupported:
                raise ShortcutlabError(f"{name} cannot run on {self.name}: "
                                       f"{self.unsupported[name]}")
            if name not in known:
                runnable = [n for n in known if n not in self.unsupported]
                raise ShortcutlabError(f"unknown method {name!r} for {self.name}; choose from "
                                       f"{', '.join(runnable)}")
        return chosen

    def scaling(self, name: str | None) -> Scaling:
        name = name or self.default_scaling
        if name not in self.scalings:
            raise ShortcutlabError(f"{self.name} has no input scaling {name!r}; choose from "
                                   f"{', '.join(self.scalings)}")
        return self.scalings[name]

    def published_for(self, method: str) -> Published | None:
        return next((row for row in self.published if row.method == method), None)


def list_protocols() -> list[str]:
    """The protocols shipped with shortcutlab, by name."""
    files = resources.files(DATA_PACKAGE).iterdir()
    return sorted(path.name.removesuffix(".toml") for path in files
                  if path.name.endswith(".toml"))


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name lists the known ones."""
    if name not in list_protocols():
        raise ShortcutlabError(f"unknown protocol {name!r}; choose from "
                               f"{', '.join(list_protocols())}")
    text = resources.files(DATA_PACKAGE).joinpath(f"{name}.toml").read_text()
    return parse_protocol(tomllib.loads(text), name)


def _require(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise ShortcutlabError(f"protocol {where} lacks {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ShortcutlabError(f"protocol {where}: {key} has the wrong type ({value!r})")
    return value


def parse_protocol(raw: dict[str, Any], where: str = "file") -> Protocol:
    """Check a protocol's TOML content and build it: every dataset field must be a
    :class:`BuildConfig` field, every trainer key a trainer setting, every ratio in (0, 1)."""
    from dataclasses import fields as dataclass_fields

    from shortcutlab.data import BuildConfig
    from shortcutlab.train.config import TrainConfig

    ratios = tuple(float(r) for r in _require(raw, "ratios", list, where))
    if not ratios or not all(0.0 < r < 1.0 for r in ratios):
        raise ShortcutlabError(f"protocol {where}: ratios must lie in (0, 1), got {ratios}")
    dataset = dict(_require(raw, "dataset", dict, where))
    build_fields = {f.name for f in dataclass_fields(BuildConfig)} - {"bias", "seed"}
    unknown = sorted(set(dataset) - build_fields)
    if unknown:
        raise ShortcutlabError(f"protocol {where}: unknown dataset field(s) {', '.join(unknown)}")
    for ratio in ratios:
        BuildConfig(**dataset, bias=1.0 - ratio).validate()
    trainer = dict(_require(raw, "trainer", dict, where))
    extra = {"step_every_epochs", "evals_per_epoch"}
    unknown = sorted(set(trainer) - set(TrainConfig.keys()) - extra)
    if unknown:
        raise ShortcutlabError(f"protocol {where}: unknown trainer key(s) {', '.join(unknown)}")
    selection = _require(raw, "selection", str, where)
    if selection not in SELECTIONS:
        raise ShortcutlabError(f"protocol {where}: selection must be one of {SELECTIONS}")
    model = _require(raw, "model", dict, where)
    scalings_raw = dict(_require(raw, "scalings", dict, where))
    default_scaling = scalings_raw.pop("default")
    scalings = {name: Scaling(name, dict(entry.get("model_kwargs", {})), entry["text"])
                for name, entry in scalings_raw.items()}
    if default_scaling not in scalings:
        raise ShortcutlabError(f"protocol {where}: default scaling {default_scaling!r} is not "
                               "one of its scalings")
    published = []
    for row in raw.get("published", []):
        values = tuple(float(v) for v in row["values"])
        if len(values) > len(ratios):
            raise ShortcutlabError(f"protocol {where}: {row['method']} has more published "
                                   "values than ratios")
        published.append(Published(row["method"], row["label"], values, row["source"],
                                    row.get("bias_labels", "no"),
                                    row.get("selection", "not stated")))
    return Protocol(
        name=_require(raw, "name", str, where), title=_require(raw, "title", str, where),
        paper=_require(raw, "paper", str, where), code=raw.get("code", ""),
        summary=raw.get("summary", ""), ratios=ratios,
        metric=_require(raw, "metric", str, where), metric_text=raw.get("metric_text", ""),
        selection=selection, selection_text=raw.get("selection_text", selection),
        methods=tuple(_require(raw, "methods", list, where)), dataset=dataset,
        model=_require(model, "name", str, where), model_kwargs=dict(model.get("kwargs", {})),
        trainer=trainer, scalings=scalings, default_scaling=default_scaling,
        method_settings={k: dict(v) for k, v in raw.get("method_settings", {}).items()},
        unsupported=dict(raw.get("unsupported", {})), published=tuple(published),
        deviations=tuple(entry["text"] for entry in raw.get("deviations", [])),
        second_metric=raw.get("second_metric"),
        second_metric_text=raw.get("second_metric_text", ""),
    )
