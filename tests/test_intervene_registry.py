"""The method and hyperparameter registries, the control pairing and the CLI's listings."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError
from shortcutlab.intervene.hparams import (
    EPOCHS,
    OPTIMIZER_KEYS,
    HParam,
    default_hparams,
    hparam_space,
    optimizer_hparams,
    parse_overrides,
    random_hparams,
    resolve_hparams,
)
from shortcutlab.intervene.registry import (
    ROLES,
    USES,
    Intervention,
    get_method,
    hypothesis,
    list_methods,
    register_method,
    summary,
)
from shortcutlab.intervene.table import control_key, plan, render_csv, render_markdown, summarize

REQUIRED = {"tea", "rrr", "saliency-guide", "color-consistency", "groupdro", "reweight", "lff",
            "jtt"}


def test_every_required_method_is_registered_with_its_declarations():
    methods = list_methods()
    assert set(methods) >= REQUIRED
    for name in list_methods(roles=ROLES):
        cls = get_method(name)
        assert cls.name == name
        assert cls.uses and set(cls.uses) <= set(USES)
        assert hypothesis(cls).startswith("Hypothesis:") and len(hypothesis(cls)) > 100
        assert summary(cls) and summary(cls) != hypothesis(cls)
        space = hparam_space(name)
        assert set(OPTIMIZER_KEYS) <= set(space)
        # The common budget, unless a method declares that it needs more.
        assert space["epochs"].default >= EPOCHS


def test_extra_information_is_declared_honestly():
    assert get_method("lff").uses == ("none",) and get_method("jtt").uses == ("none",)
    assert get_method("rrr").uses == ("masks",) and get_method("saliency-guide").uses == ("masks",)
    assert get_method("groupdro").uses == ("color-labels",)
    assert get_method("reweight").uses == ("color-labels",)
    assert get_method("tea").uses == ("teacher",)
    assert get_method("color-consistency").uses == ("bias-knowledge",)
    assert get_method("erm-control").role == "control" and get_method("teacher").role == "teacher"


def test_unknown_method_lists_the_choices():
    with pytest.raises(ShortcutlabError, match="rrr"):
        get_method("magic")


def test_overrides_are_typed_and_checked():
    hparams = resolve_hparams("rrr", parse_overrides(["penalty=30", "batch_size=64",
                                                      "optimizer=sgd"]))
    assert hparams["penalty"] == 30.0 and isinstance(hparams["penalty"], float)
    assert hparams["batch_size"] == 64 and isinstance(hparams["batch_size"], int)
    assert hparams["optimizer"] == "sgd"
    with pytest.raises(ShortcutlabError, match="penalty"):
        resolve_hparams("rrr", {"penalti": "1"})
    with pytest.raises(ShortcutlabError, match="integer"):
        resolve_hparams("rrr", {"batch_size": "1.5"})
    with pytest.raises(ShortcutlabError, match="choose one of"):
        resolve_hparams("rrr", {"optimizer": "rmsprop"})
    with pytest.raises(ShortcutlabError, match="key=value"):
        parse_overrides(["lr"])


def test_random_hparams_stay_in_their_ranges():
    for method in list_methods():
        space = hparam_space(method)
        for seed in range(5):
            point = random_hparams(method, seed)
            assert set(point) == set(space)
            for key, value in point.items():
                spec = space[key]
                if spec.choices is not None:
                    assert value in spec.choices
                elif spec.low is not None:
                    assert spec.low <= value <= spec.high
                else:
                    assert value == spec.default
    assert random_hparams("rrr", 1) == random_hparams("rrr", 1)


def test_each_hyperparameter_draws_from_its_own_stream():
    class Small:
        name = "small"
        hparam_space: ClassVar[dict[str, HParam]] = {
            **optimizer_hparams(),
            "penalty": HParam(1.0, "a weight", 0.1, 10.0, log=True),
            "mode": HParam("x", "a choice", choices=("x", "y", "z")),
        }

    class Grown:  # one key more, first, and the others in reverse order
        name = "grown"
        hparam_space: ClassVar[dict[str, HParam]] = {
            "new": HParam(0.5, "a new key", 0.0, 1.0),
            **dict(reversed(Small.hparam_space.items())),
        }

    for seed in range(5):
        small, grown = random_hparams(Small, seed), random_hparams(Grown, seed)
        assert {key: grown[key] for key in small} == small
    assert len({random_hparams(Small, seed)["penalty"] for seed in range(5)}) == 5
    # A registered method draws from its class's table; equal specs under equal names
    # draw equal values, whatever else the method has.
    assert random_hparams("jtt", 3) == random_hparams(get_method("jtt"), 3)
    assert {key: random_hparams("rrr", 3)[key] for key in OPTIMIZER_KEYS} == \
        {key: random_hparams(Small, 3)[key] for key in OPTIMIZER_KEYS}


def test_hyperparameters_live_on_the_method_class():
    for name in list_methods(roles=ROLES):
        cls = get_method(name)
        assert hparam_space(name) == cls.hparam_space
        assert cls.default_hparams == {key: value for key, value in default_hparams(name).items()
                                       if key not in OPTIMIZER_KEYS}
    assert get_method("jtt").default_hparams == {"identify_fraction": 0.2, "upweight": 20}
    assert default_hparams("tea")["optimizer"] == "sgd" and default_hparams("rrr")["lr"] == 1e-3

    class NoOptimizer(Intervention):
        """A method whose table forgets the optimizer keys.

        Hypothesis: none.
        """

        name = "no-optimizer-test"
        hparam_space: ClassVar[dict[str, HParam]] = {"penalty": HParam(1.0, "a weight")}

    with pytest.raises(ValueError, match="optimizer keys"):
        register_method(NoOptimizer)
    with pytest.raises(ShortcutlabError, match="no-optimizer-test"):
        get_method("no-optimizer-test")


def test_controls_are_shared_exactly_when_optimizer_settings_match(tmp_path):
    rrr, groupdro, tea = (default_hparams(m) for m in ("rrr", "groupdro", "tea"))
    assert control_key(rrr) == control_key(groupdro)  # same optimizer, lr, batch, epochs
    assert control_key(rrr) != control_key(tea)       # TEA's SGD recipe has its own control
    assert control_key(rrr) != control_key({**rrr, "lr": 0.01})
    assert control_key(rrr) == control_key({**rrr, "penalty": 1000.0})  # not an optimizer key
    jobs, pairing = plan(Path(tmp_path), ["rrr", "groupdro", "tea"], [0, 1],
                         overrides={"groupdro": {"lr": "0.01"}})
    controls = {(job.name, job.seed) for job in jobs if job.kind == "control"}
    assert len(controls) == 3 * 2  # rrr's, groupdro's (other lr) and tea's, per seed
    assert pairing["groupdro"] != pairing["rrr"] != pairing["tea"]
    for job in jobs:
        if job.kind == "control":
            method = next(m for m, key in pairing.items() if key == job.name)
            expected = resolve_hparams(method, {"lr": "0.01"} if method == "groupdro" else {})
            control = resolve_hparams("erm-control", job.overrides)
            assert {k: control[k] for k in OPTIMIZER_KEYS} == \
                {k: expected[k] for k in OPTIMIZER_KEYS}
    teachers = [job for job in jobs if job.kind == "teacher"]
    assert [job.seed for job in teachers] == [0, 1]
    tea_jobs = [job for job in jobs if job.name == "tea"]
    assert all(job.teacher_dir == tmp_path / "teacher" / f"seed{job.seed}" for job in tea_jobs)
    # The teacher of a seed is planned before the methods of that seed.
    order = [job.kind for job in jobs if job.seed == 0]
    assert order[0] == "teacher"


def test_table_pairs_each_method_with_its_control():
    results = {}
    rng = np.random.default_rng(0)
    keys = ["easy_val", "hard", "hard_inverted", "unbiased", "background_share",
            "train_seconds"]
    pairing = {"rrr": "erm-aaaa", "lff": "erm-aaaa"}
    for seed in (0, 1, 2):
        for kind, name in (("method", "rrr"), ("method", "lff"), ("control", "erm-aaaa")):
            results[(kind, name, seed)] = {k: float(rng.uniform(0.5, 1.0)) for k in keys}
    results[("method", "rrr", 0)]["hard"] = 0.99
    table = summarize(results, ["rrr", "lff"], pairing, [0, 1, 2])
    labels = [row["label"] for row in table["rows"]]
    assert labels == ["rrr", "erm-control erm-aaaa", "lff", "erm-control erm-aaaa"]
    hard = [results[("method", "rrr", s)]["hard"] for s in (0, 1, 2)]
    mean, std = table["rows"][0]["stats"]["hard"]
    assert mean == pytest.approx(np.mean(hard)) and std == pytest.approx(np.std(hard, ddof=1))
    markdown = render_markdown(table)
    assert "hard (inverted)" in markdown and "↳ erm-control erm-aaaa" in markdown
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 1 + 4
    csv_text = render_csv(table)
    assert csv_text.splitlines()[0].startswith("kind,name,paired_with,uses,seeds,easy_val_mean")
    assert len(csv_text.splitlines()) == 5


def test_cli_list_and_show(capsys):
    assert main(["intervene", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED | {"erm-control", "teacher"}:
        assert name in out
    assert "uses: masks" in out and "uses: color-labels" in out and "uses: none" in out
    assert main(["intervene", "--show", "rrr"]) == 0
    out = capsys.readouterr().out
    assert "Hypothesis:" in out and "penalty" in out and "[0.1, 1000] log" in out


def test_cli_errors_are_clear(capsys, tmp_path):
    assert main(["intervene", "--method", "rrr", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["intervene", "--show", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
