"""Bad invocations across every command: each exits with code 2, names the option or file
at fault, shows no traceback and writes nothing.

Placeholders: ``{data}`` a built tiny dataset, ``{run}`` a saved tiny model, ``{file}`` a
plain file, ``{mistyped}`` and ``{unknown_key}`` bad study configs, ``{out}`` an output
path that must still not exist afterwards.
"""

from __future__ import annotations

import pytest

from shortcutlab import models
from shortcutlab.cli import main

CASES: list[tuple[str, str]] = [
    # data
    ("data build --out {out} --bias 1.5", "--bias"),
    ("data build --out {out} --bias nan", "--bias"),
    ("data build --out {out} --noise-mix -0.1", "--noise-mix"),
    ("data build --out {out} --alpha 2", "--alpha"),
    ("data build --out {out} --limit 0", "--limit"),
    ("data build --out {out} --limit -3", "--limit"),
    ("data build --out {out} --seed -1", "--seed"),
    ("data build --out {out} --style plaid", "--style"),
    ("data build --out {out} --hard easy", "--hard"),
    ("data build --out {out} --color-noise -0.01", "--color-noise"),
    ("data build --out {out} --validation 0", "--validation"),
    ("data build --out {out} --palette sunset", "--palette"),
    ("data build --out {out} --spread lumpy", "--spread"),
    ("data build --out {file}/sub --source synthetic --limit 30", "{file}"),
    ("data show {data} --out {out} --per-cell 0", "--per-cell"),
    ("data show {out} --out {file}.png", "{out}"),
    ("data styles --out {out} --noise-mix 3", "--noise-mix"),
    # train
    ("train --data {data} --out {out} --lr 0", "--lr"),
    ("train --data {data} --out {out} --lr -1", "--lr"),
    ("train --data {data} --out {out} --momentum -1", "--momentum"),
    ("train --data {data} --out {out} --momentum 1", "--momentum"),
    ("train --data {data} --out {out} --weight-decay -1", "--weight-decay"),
    ("train --data {data} --out {out} --batch-size 0", "--batch-size"),
    ("train --data {data} --out {out} --epochs -1", "--epochs"),
    ("train --data {data} --out {out} --steps 0", "--steps"),
    ("train --data {data} --out {out} --warmup-steps -3", "--warmup-steps"),
    ("train --data {data} --out {out} --eval-every 0", "--eval-every"),
    ("train --data {data} --out {out} --seed -2", "--seed"),
    ("train --data {data} --out {out} --threads 0", "--threads"),
    ("train --data {data} --out {out} --device gpu", "--device"),
    ("train --data {data} --out {out} --optimizer rmsprop", "--optimizer"),
    ("train --data {data} --out {out} --schedule wavy", "--schedule"),
    ("train --data {data} --out {out} --set grad_clip=-1", "grad_clip"),
    ("train --data {data} --out {out} --set eval_dense_every=abc", "eval_dense_every"),
    ("train --data {data} --out {out} --set nonsense=1", "nonsense"),
    ("train --data {data} --out {out} --select first:bogus>=0.5", "bogus"),
    ("train --data {data} --out {out} --select sometimes", "selection rule"),
    ("train --data {data} --out {out} --model-arg width=-3", "cnn3"),
    ("train --data {data} --out {out} --model-arg colour=3", "colour"),
    ("train --data {data} --out {out} --model nosuchnet", "nosuchnet"),
    ("train --data {out} --out {out}x", "{out}"),
    ("evaluate {run} --data {data} --out {out} --swap-images 0", "--swap-images"),
    ("evaluate {out} --data {data}", "{out}"),
    # explain
    ("explain {run} --data {data} --out {out} --limit -1", "--limit"),
    ("explain {run} --data {data} --out {out} --examples -2", "--examples"),
    ("explain {run} --data {data} --out {out} --epsilon -0.1", "--epsilon"),
    ("explain {run} --data {data} --out {out} --steps 0", "--steps"),
    ("explain {run} --data {data} --out {out} --method shap", "--method"),
    ("explain {run} --data {data} --out {out} --batch-size 0", "--batch-size"),
    # probe
    ("probe {run} --out {out} --steps 0", "--steps"),
    ("probe {run} --out {out} --lr -0.1", "--lr"),
    ("probe {run} --out {out} --tv -1", "--tv"),
    ("probe {run} --out {out} --max-units 0", "--max-units"),
    ("probe {run} --out {out} --param wavelet", "--param"),
    # attack
    ("attack {run} --data {data} --out {out} --eps 0", "--eps"),
    ("attack {run} --data {data} --out {out} --max-eps -1", "--max-eps"),
    ("attack {run} --data {data} --out {out} --precision 0", "--precision"),
    ("attack {run} --data {data} --out {out} --confidence 1.5", "--confidence"),
    ("attack {run} --data {data} --out {out} --steps 0", "--steps"),
    ("attack {run} --data {data} --out {out} --restarts 0", "--restarts"),
    ("attack {run} --data {data} --out {out} --source -1", "--source"),
    ("attack {run} --data {data} --out {out} --attack cw", "--attack"),
    # an output path in the way: refused when the option is read, before any work
    ("attack {run} --data {data} --out {file}", "--out"),
    ("train --data {data} --out {file}", "{file}"),
    ("train --data {data} --out {file}/run", "{file}"),
    ("explain {run} --data {data} --out {file}", "--out"),
    ("probe {run} --out {file}", "--out"),
    ("sae train {run} --out {file}", "--out"),
    ("intervene --method rrr --data {data} --out {file}", "--out"),
    ("study --out {file}", "--out"),
    ("benchmark lff-cmnist --out {file}", "--out"),
    ("data show {data} --out {root}", "folder"),
    ("data styles --out {file}/styles.png", "{file}"),
    # sae
    ("sae train {run} --out {out} --expansion 0", "--expansion"),
    ("sae train {run} --out {out} --k 0", "--k"),
    ("sae train {run} --out {out} --l1 -1", "--l1"),
    ("sae train {run} --out {out} --steps 0", "--steps"),
    ("sae label {out} --cards -1", "--cards"),
    ("sae label {out} --per-digit 0", "--per-digit"),
    ("sae intervene {out} --boost-images 0", "--boost-images"),
    # intervene
    ("intervene --method nosuch --data {data} --out {out}", "nosuch"),
    ("intervene --method rrr --data {data} --out {out} --seed -1", "--seed"),
    ("intervene --method rrr --data {data} --out {out} --set grad_clip=-1", "grad_clip"),
    ("intervene --method rrr --data {data} --out {out} --set penalty=abc", "penalty"),
    ("intervene --all --data {data} --out {out} --workers 0", "--workers"),
    ("intervene --all --data {data} --out {out} --seeds a,b", "--seeds"),
    ("intervene --show nosuch", "nosuch"),
    # sweep and benchmark
    ("sweep {out}.yaml --dry-run", "{out}.yaml"),
    ("sweep {file} --workers 0", "--workers"),
    ("sweep {file} --max-trials -1", "--max-trials"),
    ("benchmark nosuch --out {out}", "nosuch"),
    ("benchmark lff-cmnist --out {out} --ratios 0.3", "ratio"),
    ("benchmark lff-cmnist --out {out} --methods vanilla", "vanilla"),
    ("benchmark lff-cmnist --out {out} --scaling raw", "raw"),
    ("benchmark lff-cmnist --out {out} --epochs 0", "--epochs"),
    ("benchmark lff-cmnist --out {out} --workers 0", "--workers"),
    ("benchmark lff-cmnist --out {out} --set lff.nosuch=1", "nosuch"),
    ("benchmark lff-cmnist --out {out} --methods erm --set lff.q=0.5", "lff"),
    ("benchmark lff-cmnist --out {out} --set q=0.5", "METHOD.KEY=VALUE"),
    # study and report
    ("study --out {out} --seed -1", "--seed"),
    ("study --out {out} --only nosuchstage", "nosuchstage"),
    ("study --out {out} --config {out}.toml", "{out}.toml"),
    ("study --out {out} --quick --config {mistyped}", "data.limit"),
    ("study --out {out} --quick --config {unknown_key}", "explain.methodz"),
    # every section checked by its command's own flag, before the first stage
    ("study --out {out} --only data --config {probe_steps}", "shortcutlab probe --steps"),
    ("study --out {out} --only data --config {attack_eps}", "shortcutlab attack --eps"),
    ("study --out {out} --only data --config {explain_method}", "shap"),
    ("study --out {out} --only data --config {cured_method}", "nosuch"),
    ("study --out {out} --only data --config {lazy_steps}", "shortcutlab train --steps"),
    ("intervene --all --data {data} --out {out} --methods lff,nosuch", "nosuch"),
    ("report {out}", "{out}"),
    ("report {out} --height 0", "--height"),
]


@pytest.fixture(scope="module")
def places(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    run = root / "run"
    models.save(models.create("cnn3", width=4, hidden=8), run)
    plain = root / "plain.txt"
    plain.write_text("not a directory, not a spec")
    mistyped = root / "mistyped.toml"
    mistyped.write_text('[data]\nlimit = "200"\n')
    unknown_key = root / "unknown.toml"
    unknown_key.write_text('[explain]\nmethodz = "lrp"\n')
    sections = {"probe_steps": "[probe]\nsteps = 0\n", "attack_eps": "[attack]\neps = -1\n",
                "explain_method": '[explain]\nmethods = ["lrp", "shap"]\n',
                "cured_method": '[cured]\nmethods = ["nosuch"]\n',
                "lazy_steps": "[lazy]\nsteps = -4\n"}
    configs = {}
    for name, text in sections.items():
        (root / f"{name}.toml").write_text(text)
        configs[name] = str(root / f"{name}.toml")
    return {"data": str(tiny_data), "run": str(run), "file": str(plain), "root": root,
            "mistyped": str(mistyped), "unknown_key": str(unknown_key), **configs}


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({argv for argv, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("template, names", CASES, ids=[argv for argv, _ in CASES])
def test_bad_invocation(template, names, places, capsys, tmp_path):
    out = tmp_path / "out"
    values = {**places, "out": str(out)}
    argv = template.format(**values).split()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert names.format(**values) in err, err
    assert not out.exists(), f"{out} was written"
    assert not list(tmp_path.glob("out*")) or names.format(**values).startswith(str(out))


def test_exporting_a_sweep_that_never_ran_creates_no_database(tmp_path, capsys):
    spec = tmp_path / "never.yaml"
    spec.write_text("study: never\nmode: grid\nfixed: {data: {source: synthetic, limit: 40}}\n"
                    f"axes: {{train: {{lr: [0.1]}}}}\noutput: {tmp_path / 'out'}\n")
    assert main(["sweep", "export", str(spec)]) == 2
    assert "has not run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
