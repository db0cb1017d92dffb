"""Sweep specs: what to vary, what to hold fixed, and how to read the result.

A spec is a small YAML file (see the package docstring for an example). Parameters live
in two sections: ``data`` (the fields of :class:`shortcutlab.data.BuildConfig`) and
``train`` (the trainer's preset, model, ``model_kwargs.*`` entries and hyperparameters,
the ``algorithm`` and that algorithm's own hyperparameters, e.g. ``upweight`` for jtt).
Each parameter is named ``section.key`` inside the study (``data.bias``,
``train.model_kwargs.width``), so the dataset seed and the training seed never collide.

Everything is checked up front, before a single trial runs, so that a typo in the spec
costs a second and not an hour of compute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shortcutlab.errors import ShortcutlabError

MODES = ("grid", "search")
DIRECTIONS = ("minimize", "maximize")
SECTIONS = ("data", "train")
TOP_LEVEL_KEYS = (
    "study", "mode", "objective", "n_trials", "seed", "fixed", "axes", "output", "storage",
    "datasets", "runner", "description",
)
MODEL_KWARGS = "model_kwargs"
HPARAMS = "hparams"  # ``hparams.<algorithm>.<key>``: a setting only trials of that algorithm get
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

Scalar = str | int | float | bool | None

# What a sweep passes to ``train_run`` beside the trainer's settings (TrainConfig's fields).
RUN_KEYS: dict[str, type | tuple[type, ...]] = {"preset": str, "seed": int, "algorithm": str}


_ANNOTATIONS = {"str": str, "int": int, "float": float, "bool": bool, "None": type(None)}


def _annotation_type(annotation: str) -> type | tuple[type, ...]:
    """``"float | None"`` -> ``(float, NoneType)``; anything unusual -> ``object``."""
    parts = [part.strip() for part in str(annotation).split("|")]
    if not all(part in _ANNOTATIONS for part in parts):
        return object
    types = tuple(_ANNOTATIONS[part] for part in parts)
    return types[0] if len(types) == 1 else types


def train_keys() -> dict[str, type | tuple[type, ...]]:
    """The training parameters a spec may set, with their types, read off the trainer."""
    from shortcutlab.train.config import TrainConfig

    keys = {f.name: _annotation_type(f.type) for f in fields(TrainConfig)
            if f.name != MODEL_KWARGS}
    return {**RUN_KEYS, **keys}


def _data_keys() -> dict[str, type | tuple[type, ...]]:
    from shortcutlab.data.build import BuildConfig

    types = {"str": str, "float": float, "int": int, "int | None": (int, type(None))}
    return {f.name: types.get(str(f.type), object) for f in fields(BuildConfig)}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(t) for t in expected)
    return {type(None): "null"}.get(expected, expected.__name__)


def check_type(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Return ``value`` (ints widened to float where a float is expected) or raise clearly."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in allowed:
        raise ShortcutlabError(f"{name}: expected {_type_name(expected)}, got {value!r}")
    if isinstance(value, allowed):
        return value
    if float in allowed and isinstance(value, int):
        return float(value)
    raise ShortcutlabError(
        f"{name}: expected {_type_name(expected)}, got {value!r} ({type(value).__name__})"
    )


@dataclass(frozen=True)
class Axis:
    """One swept parameter: a list of values (grid, or categorical in a search) or a range."""

    section: str
    key: str
    values: tuple[Scalar, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def is_range(self) -> bool:
        return self.values is None

    @property
    def is_int_range(self) -> bool:
        return self.is_range and isinstance(self.low, int) and isinstance(self.high, int)

    def to_dict(self) -> dict[str, Any]:
        if self.values is not None:
            return {"values": list(self.values)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec."""

    study: str
    mode: str
    axes: tuple[Axis, ...]
    fixed_data: Mapping[str, Any] = field(default_factory=dict)
    fixed_train: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "hard"
    direction: str = "minimize"
    n_trials: int | None = None
    seed: int = 0
    output: str | None = None
    storage: str | None = None
    datasets: str | None = None
    runner: str | None = None
    description: str = ""
    path: Path | None = None
    # A point whose trial failed with an error is run again by the next command (once
    # per worker) instead of being kept as failed: for runners whose runs resume.
    retry_failed: bool = False

    @property
    def axis_names(self) -> list[str]:
        return [axis.name for axis in self.axes]

    def grid_space(self) -> dict[str, list[Scalar]]:
        """The grid as Optuna's GridSampler wants it: parameter name -> values."""
        return {axis.name: list(axis.values or ()) for axis in self.axes}

    def grid_size(self) -> int:
        return math.prod(len(axis.values or ()) for axis in self.axes) if self.axes else 1

    def planned_trials(self) -> int:
        return self.grid_size() if self.mode == "grid" else int(self.n_trials or 0)

    def trial_config(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The dataset config and the training config of one trial, from its parameters."""
        data = dict(self.fixed_data)
        train = dict(self.fixed_train)
        for name, value in params.items():
            section, key = name.split(".", 1)
            (data if section == "data" else train)[key] = value
        return data, nest_model_kwargs(train)

    def identity(self) -> dict[str, Any]:
        """What defines the experiment: two specs with the same identity share a study.

        The trial budget of a search is not part of it, so a search can be extended.
        """
        return {
            "mode": self.mode,
            "axes": {axis.name: axis.to_dict() for axis in self.axes},
            "fixed": {"data": dict(self.fixed_data), "train": dict(self.fixed_train)},
            "objective": {"metric": self.metric, "direction": self.direction},
            "seed": self.seed,
        }


def nest_model_kwargs(train: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model_kwargs.width": 8}`` -> ``{"model_kwargs": {"width": 8}}``; and the
    per-algorithm settings ``{"hparams.lff.q": 0.7}`` -> ``{"hparams": {"lff": {"q": 0.7}}}``."""
    out: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    per_algorithm: dict[str, dict[str, Any]] = {}
    for key, value in train.items():
        if key.startswith(MODEL_KWARGS + "."):
            kwargs[key.split(".", 1)[1]] = value
        elif key.startswith(HPARAMS + "."):
            _, algorithm, name = key.split(".", 2)
            per_algorithm.setdefault(algorithm, {})[name] = value
        else:
            out[key] = value
    if kwargs:
        out[MODEL_KWARGS] = kwargs
    if per_algorithm:
        out[HPARAMS] = per_algorithm
    return out


def _flatten_section(section: str, entries: Any, where: str) -> dict[str, Any]:
    """Accept ``model_kwargs: {width: ...}`` as well as ``model_kwargs.width: ...``."""
    if entries is None:
        return {}
    if not isinstance(entries, Mapping):
        raise ShortcutlabError(f"{where}.{section} must be a mapping of parameter: value")
    flat: dict[str, Any] = {}
    for key, value in entries.items():
        key = str(key)
        if section == "train" and key == MODEL_KWARGS:
            if not isinstance(value, Mapping):
                raise ShortcutlabError(f"{where}.train.model_kwargs must be a mapping")
            for sub, sub_value in value.items():
                flat[f"{MODEL_KWARGS}.{sub}"] = sub_value
        elif section == "train" and key == HPARAMS:
            if not isinstance(value, Mapping) or not all(
                    isinstance(entry, Mapping) for entry in value.values()):
                raise ShortcutlabError(f"{where}.train.hparams maps an algorithm to its "
                                       "settings, e.g. hparams: {lff: {q: 0.7}}")
            for algorithm, entries in value.items():
                for sub, sub_value in entries.items():
                    flat[f"{HPARAMS}.{algorithm}.{sub}"] = sub_value
        else:
            flat[key] = value
    return flat


def _check_key(section: str, key: str, where: str,
               method_keys: Mapping[str, type] | None = None) -> type | tuple[type, ...]:
    if section == "data":
        known = _data_keys()
        if key not in known:
            raise ShortcutlabError(
                f"unknown dataset parameter {where}.data.{key}; "
                f"dataset parameters are: {', '.join(known)}"
            )
        return known[key]
    if key.startswith(MODEL_KWARGS + "."):
        sub = key.split(".", 1)[1]
        if not sub.isidentifier():
            raise ShortcutlabError(f"{where}.train.{key}: {sub!r} is not a keyword name")
        return (str, int, float, bool, type(None))
    if key.startswith(HPARAMS + "."):
        return _algorithm_setting(key, where)
    known = train_keys()
    method_keys = method_keys or {}
    if key not in known and key in method_keys:
        return method_keys[key]
    if key not in known:
        raise ShortcutlabError(
            f"unknown training parameter {where}.train.{key}; training parameters are: "
            f"{', '.join(known)} and model_kwargs.<name> (width, kernel_size, ...)"
            + (f"; hyperparameters of the spec's algorithm: {', '.join(method_keys)}"
               if method_keys else "")
        )
    return known[key]


def _algorithm_setting(key: str, where: str) -> type | tuple[type, ...]:
    """The type of ``hparams.<algorithm>.<name>``: the algorithm's own default's."""
    from shortcutlab.train import get_algorithm

    parts = key.split(".", 2)
    if len(parts) != 3:
        raise ShortcutlabError(f"{where}.train.{key}: write hparams.<algorithm>.<setting>")
    _, algorithm, name = parts
    _check_algorithm(algorithm)
    defaults = get_algorithm(algorithm).default_hparams
    if name not in defaults:
        raise ShortcutlabError(
            f"{where}.train.{key}: {algorithm} has no setting {name!r}; its settings are: "
            f"{', '.join(defaults) or 'none'}")
    kind = type(defaults[name])
    return (int, float) if kind is float else kind


def _parse_axis(section: str, key: str, raw: Any, mode: str,
                method_keys: Mapping[str, type] | None = None) -> Axis:
    name = f"axes.{section}.{key}"
    expected = _check_key(section, key, "axes", method_keys)
    if isinstance(raw, Mapping) and "choices" in raw:
        raw = raw["choices"]
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        if not raw:
            raise ShortcutlabError(f"{name} has no values; give at least one")
        values = tuple(check_type(name, value, expected) for value in raw)
        if len(set(map(repr, values))) != len(values):
            raise ShortcutlabError(f"{name} lists a value twice: {list(raw)}")
        return Axis(section, key, values=values)
    if isinstance(raw, Mapping):
        if mode == "grid":
            raise ShortcutlabError(
                f"{name}: a grid needs a list of values, not a range; "
                "list them (e.g. [0.001, 0.01, 0.1]) or use mode: search"
            )
        unknown = set(raw) - {"low", "high", "log", "step"}
        if unknown or "low" not in raw or "high" not in raw:
            raise ShortcutlabError(
                f"{name}: a range is {{low: ..., high: ..., log: false, step: null}}"
                + (f"; unknown keys {sorted(unknown)}" if unknown else "")
            )
        low, high = raw["low"], raw["high"]
        numeric = (int, float)
        if isinstance(low, bool) or isinstance(high, bool) or not (
            isinstance(low, numeric) and isinstance(high, numeric)
        ):
            raise ShortcutlabError(f"{name}: low and high must be numbers")
        if isinstance(low, int) and isinstance(high, int):
            check_type(name, low, expected)
        elif float not in (expected if isinstance(expected, tuple) else (expected,)):
            raise ShortcutlabError(
                f"{name}: expected {_type_name(expected)} values, got a float range"
            )
        if not low < high:
            raise ShortcutlabError(f"{name}: low ({low}) must be below high ({high})")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise ShortcutlabError(f"{name}.log must be true or false")
        if log and low <= 0:
            raise ShortcutlabError(f"{name}: a log range needs low > 0")
        step = raw.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, numeric)
                                 or step <= 0 or log):
            raise ShortcutlabError(f"{name}.step must be a positive number (and not with log)")
        return Axis(section, key, low=low, high=high, log=log, step=step)
    raise ShortcutlabError(
        f"{name}: expected a list of values"
        + ("" if mode == "grid" else " or a range {low: ..., high: ...}")
        + f", got {raw!r}"
    )


def _check_data_values(fixed: Mapping[str, Any], axes: Sequence[Axis]) -> None:
    """Every dataset value must make a valid BuildConfig (range checks live there)."""
    from shortcutlab.data.build import BuildConfig
    from shortcutlab.data.sources import SOURCES

    base = dict(fixed)
    try:
        BuildConfig(**base).validate()
    except ShortcutlabError as exc:
        raise ShortcutlabError(f"fixed.data: {_strip_flag(exc)}") from exc
    for axis in axes:
        if axis.section != "data":
            continue
        for value in axis.values or (axis.low, axis.high):
            try:
                config = BuildConfig(**{**base, axis.key: value})
                config.validate()
            except ShortcutlabError as exc:
                raise ShortcutlabError(f"{axis.name} = {value!r}: {_strip_flag(exc)}") from exc
            if config.source not in SOURCES:
                raise ShortcutlabError(
                    f"{axis.name} = {value!r}: unknown source; choose one of {', '.join(SOURCES)}"
                )
    if "source" in base and base["source"] not in SOURCES:
        raise ShortcutlabError(
            f"fixed.data.source {base['source']!r} is unknown; choose one of {', '.join(SOURCES)}"
        )


def _strip_flag(exc: Exception) -> str:
    """BuildConfig speaks of CLI flags (``--noise-mix``); a spec calls them ``noise_mix``."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), str(exc))


def _values_of(key: str, fixed: Mapping[str, Any], axes: Sequence[Axis]) -> list[Any]:
    values = [fixed[key]] if key in fixed else []
    for axis in axes:
        if axis.name == f"train.{key}":
            values.extend(axis.values or ())
    return values


def _check_training_names(fixed: Mapping[str, Any], axes: Sequence[Axis]) -> None:
    from shortcutlab import models

    for name in _values_of("model", fixed, axes):
        if name not in models.list_models():
            raise ShortcutlabError(
                f"unknown model {name!r} in the spec; "
                f"choose one of {', '.join(models.list_models())}"
            )
    from shortcutlab.train import list_presets

    for name in _values_of("preset", fixed, axes):
        if name not in (*list_presets(), "none"):
            raise ShortcutlabError(
                f"unknown preset {name!r} in the spec; choose one of "
                f"{', '.join(list_presets())} (or none: the trainer's defaults)"
            )
    for name in _values_of("algorithm", fixed, axes):
        _check_algorithm(name)


def _check_algorithm(name: Any) -> None:
    from shortcutlab.train import list_algorithms

    if name not in list_algorithms():
        raise ShortcutlabError(
            f"unknown algorithm {name!r} in the spec; choose one of "
            f"{', '.join(list_algorithms())}"
        )


def _named_algorithms(fixed_raw: Mapping[str, Any], axes_raw: Mapping[str, Any]) -> list[str]:
    """The algorithm names a spec gives, fixed or swept, read before the spec is checked."""
    names: list[Any] = []
    fixed = fixed_raw.get("train")
    if isinstance(fixed, Mapping) and fixed.get("algorithm") is not None:
        names.append(fixed["algorithm"])
    swept = axes_raw.get("train")
    values = swept.get("algorithm") if isinstance(swept, Mapping) else None
    if isinstance(values, Mapping):
        values = values.get("choices")
    if isinstance(values, Sequence) and not isinstance(values, str):
        names.extend(values)
    return names


def _method_keys(fixed_raw: Mapping[str, Any], axes_raw: Mapping[str, Any]) -> dict[str, type]:
    """The method hyperparameters a spec may set beside the trainer's settings: those every
    algorithm it names takes (``default_hparams``), typed by their defaults. A trial hands
    them to ``train_run``, where an intervention types and checks them (``resolve_hparams``)."""
    from shortcutlab.train import get_algorithm

    common: dict[str, type] | None = None
    for name in _named_algorithms(fixed_raw, axes_raw):
        _check_algorithm(name)
        keys = {key: type(value) for key, value in get_algorithm(name).default_hparams.items()}
        common = keys if common is None else {
            key: kind for key, kind in common.items() if keys.get(key) is kind}
    return common or {}


def parse_spec(raw: Any, path: Path | None = None) -> SweepSpec:
    """Validate a spec given as a mapping (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise ShortcutlabError("a sweep spec is a YAML mapping with at least study, mode and axes")
    unknown = set(raw) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise ShortcutlabError(
            f"unknown spec key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"a spec has: {', '.join(TOP_LEVEL_KEYS)}"
        )
    study = raw.get("study")
    if not isinstance(study, str) or not _STUDY_NAME.match(study):
        raise ShortcutlabError(
            "spec needs `study: NAME` (letters, digits, '_', '.', '-'; at most 100 characters)"
        )
    mode = raw.get("mode", "grid")
    if mode not in MODES:
        raise ShortcutlabError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")

    objective = raw.get("objective", {}) or {}
    if isinstance(objective, str):
        objective = {"metric": objective}
    if not isinstance(objective, Mapping) or set(objective) - {"metric", "direction"}:
        raise ShortcutlabError("objective is {metric: NAME, direction: minimize|maximize}")
    metric = objective.get("metric", "hard")
    direction = objective.get("direction", "minimize")
    if not isinstance(metric, str) or not metric:
        raise ShortcutlabError("objective.metric must name a metric, e.g. hard")
    if direction not in DIRECTIONS:
        raise ShortcutlabError(
            f"objective.direction must be minimize or maximize, got {direction!r}"
        )

    n_trials = raw.get("n_trials")
    if mode == "search":
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ShortcutlabError("a search needs `n_trials: N` (a positive integer)")
    elif n_trials is not None:
        raise ShortcutlabError("n_trials is for mode: search; a grid runs every point once")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ShortcutlabError(f"seed must be an integer, got {seed!r}")

    fixed_raw = raw.get("fixed", {}) or {}
    axes_raw = raw.get("axes", {}) or {}
    for where, block in (("fixed", fixed_raw), ("axes", axes_raw)):
        if not isinstance(block, Mapping):
            raise ShortcutlabError(f"{where} must be a mapping with `data:` and/or `train:`")
        bad = set(block) - set(SECTIONS)
        if bad:
            raise ShortcutlabError(
                f"{where} has unknown section(s) {', '.join(sorted(map(str, bad)))}; "
                "use data: (dataset parameters) and train: (training parameters)"
            )

    method_keys = _method_keys(fixed_raw, axes_raw)
    fixed: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        entries = _flatten_section(section, fixed_raw.get(section), "fixed")
        checked = {}
        for key, value in entries.items():
            expected = _check_key(section, key, "fixed", method_keys)
            checked[key] = check_type(f"fixed.{section}.{key}", value, expected)
        fixed[section] = checked

    axes: list[Axis] = []
    for section in SECTIONS:
        for key, value in _flatten_section(section, axes_raw.get(section), "axes").items():
            if key in fixed[section]:
                raise ShortcutlabError(
                    f"{section}.{key} is both fixed and swept; keep it in one place"
                )
            axes.append(_parse_axis(section, key, value, mode, method_keys))
    if not axes:
        raise ShortcutlabError("the spec sweeps nothing; list at least one axis under axes:")

    _check_data_values(fixed["data"], axes)
    _check_training_names(fixed["train"], axes)

    strings = {}
    for key in ("output", "storage", "datasets", "runner", "description"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ShortcutlabError(f"{key} must be a string, got {value!r}")
        strings[key] = value
    if strings["runner"] is not None and ":" not in strings["runner"]:
        raise ShortcutlabError("runner must be `package.module:function`")

    return SweepSpec(
        study=study, mode=mode, axes=tuple(axes), fixed_data=fixed["data"],
        fixed_train=fixed["train"], metric=metric, direction=direction,
        n_trials=n_trials if mode == "search" else None, seed=seed,
        output=strings["output"], storage=strings["storage"], datasets=strings["datasets"],
        runner=strings["runner"], description=strings["description"] or "", path=path,
    )


def _yaml_loader() -> type:
    """A safe loader that reads ``1e-3`` as a float (YAML 1.1 insists on ``1.0e-3``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[0-9][0-9_]*[eE][-+]?[0-9]+
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."),
    )
    return Loader


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"sweep spec {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ShortcutlabError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_spec(raw, path=path)
    except ShortcutlabError as exc:
        raise ShortcutlabError(f"{path}: {exc}") from exc


def _probe_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The parameter points whose configs :func:`check_trials` builds: every grid point;
    for a search, each axis's choices or range ends with the other axes at their first."""
    import itertools

    if spec.mode == "grid":
        names = spec.axis_names
        values = [list(axis.values or ()) for axis in spec.axes]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*values)]
    first = {axis.name: (axis.values[0] if axis.values else axis.low) for axis in spec.axes}
    points = []
    for axis in spec.axes:
        options = list(axis.values) if axis.values else [axis.low, axis.high]
        points += [{**first, axis.name: value} for value in options]
    return points


def check_trials(spec: SweepSpec, limit: int = 2000) -> int:
    """Build every trial's training setup the way a worker will, without training: the
    trainer settings (types, ranges, selection rule), the algorithm's own settings, the
    model with its kwargs, and the device. ``--dry-run`` and a real run call it before
    the first trial, so a spec that would fail its trials fails here. Returns how many
    points were checked (at most ``limit``)."""
    from shortcutlab import models
    from shortcutlab.runtime import resolve_device
    from shortcutlab.train.api import build_config

    seen: set[str] = set()
    points = _probe_points(spec)[:limit]
    for params in points:
        _, train = spec.trial_config(params)
        train = dict(train)
        preset = train.pop("preset", "lazy")
        train.pop("seed", None)
        algorithm = train.pop("algorithm", None)
        train.update(train.pop(HPARAMS, {}).get(algorithm or "erm", {}))
        where = ", ".join(f"{k}={v}" for k, v in params.items())
        try:
            config, _ = build_config(None if preset == "none" else preset, algorithm, **train)
            key = repr((config.model, sorted(config.model_kwargs.items()), config.device))
            if key not in seen:
                seen.add(key)
                models.create(config.model, **config.model_kwargs)
                resolve_device(config.device)
        except ShortcutlabError as exc:
            raise ShortcutlabError(f"the trial at {where} would fail: {exc}") from None
    return len(points)
