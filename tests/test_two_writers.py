"""Two real writers on one directory: a trainer or builder in another process, paused at a
known point inside its run, and this process trying to write the same directory.

The other process is the real ``Trainer`` (or ``build_dataset``) with a pause added at its
first evaluation (or before its first file), so the race is decided by the test and not by
the machine's speed: it waits for the pause, tries, then releases or kills the other one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shortcutlab.artifacts import read_jsonl
from shortcutlab.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
STEPS, EVAL_EVERY = 12, 3
TRAIN = ["--preset", "lazy", "--steps", str(STEPS), "--eval-every", str(EVAL_EVERY),
         "--batch-size", "16", "--model-arg", "width=4", "--model-arg", "hidden=8",
         "--threads", "1"]

PAUSED_TRAINER = textwrap.dedent("""
    import json, pathlib, sys, time
    from shortcutlab.cli import main
    from shortcutlab.train import trainer

    gate, argv = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2])
    paused = []

    def pause(record):
        if not paused:  # once: at the first evaluation, after its checkpoint
            paused.append(record["step"])
            print("paused", record["step"], flush=True)
            while not gate.exists():
                time.sleep(0.05)

    original = trainer.Trainer.__init__

    def with_pause(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "on_eval": pause})

    trainer.Trainer.__init__ = with_pause
    code = main(argv)
    print("done" if code == 0 else f"exit {code}", flush=True)
    sys.exit(code)
""")

PAUSED_BUILDER = textwrap.dedent("""
    import pathlib, sys, time
    from shortcutlab.data import BuildConfig, build, build_dataset, load_source

    out, gate = sys.argv[1], pathlib.Path(sys.argv[2])
    inner = build._build_dataset

    def paused(*args, **kwargs):  # inside the lock, before the first file is written
        print("paused", flush=True)
        while not gate.exists():
            time.sleep(0.05)
        return inner(*args, **kwargs)

    build._build_dataset = paused
    meta = build_dataset(BuildConfig(source="synthetic", limit=40, seed=1), out,
                         load_source("synthetic", limit=40))
    print("built", meta["dataset_id"], flush=True)
""")


def _environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _start(script: str, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``script`` and wait (no deadline: it is blocked until told) for its pause."""
    process = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=_environment())
    line = process.stdout.readline().strip()
    if not line.startswith("paused"):
        process.kill()
        pytest.fail(f"the other writer did not reach its pause: {line!r}")
    return process, line


def _finish(process: subprocess.Popen, gate: Path) -> str:
    gate.touch()
    output = process.stdout.read()
    assert process.wait() == 0, output
    return output


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def _steps(run: Path) -> list[int]:
    return [record["step"] for record in read_jsonl(run / "log.jsonl")]


def _trainer(data: Path, run: Path, gate: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    argv = ["train", "--data", str(data), "--out", str(run), *TRAIN, *extra]
    return _start(PAUSED_TRAINER, str(gate), json.dumps(argv))


def test_two_trainers_then_a_killed_one_resumed(tiny_data, tmp_path, capsys):
    run, gate = tmp_path / "run", tmp_path / "go"
    other, _ = _trainer(tiny_data, run, gate)
    try:
        for extra in (["--force"], ["--resume"], []):
            code = main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, *extra])
            err = capsys.readouterr().err
            assert code == 2, err
            assert f"being written by process {other.pid}" in err and "Traceback" not in err
    finally:
        _kill(other)  # killed at its first evaluation, its checkpoint written
    assert _steps(run) == [EVAL_EVERY] and not (run / "model.pt").exists()
    leftover = run / "checkpoints" / ".checkpoint.pt.0a1b2c3d.tmp"  # a killed write's
    leftover.write_bytes(b"half")

    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--resume"]) == 0
    assert not leftover.exists()
    assert _steps(run) == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))  # each once
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"]["steps"] == STEPS and (run / "model.pt").is_file()


def test_two_resumes_of_one_run(tiny_data, tmp_path, capsys):
    run, gate = tmp_path / "run", tmp_path / "go"
    first, _ = _trainer(tiny_data, run, gate)
    _kill(first)  # an interrupted run, to be resumed twice at once
    resumer, line = _trainer(tiny_data, run, gate, "--resume")
    assert line == f"paused {2 * EVAL_EVERY}"  # it continued from the checkpoint
    try:
        code = main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--resume"])
        err = capsys.readouterr().err
        assert code == 2 and f"being written by process {resumer.pid}" in err
    finally:
        assert "done" in _finish(resumer, gate)
    assert _steps(run) == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))  # no evaluation twice
    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--resume"]) == 0


def test_two_dataset_builds(tmp_path, capsys):
    out, gate = tmp_path / "data", tmp_path / "go"
    builder, _ = _start(PAUSED_BUILDER, str(out), str(gate))
    try:
        code = main(["data", "build", "--source", "synthetic", "--limit", "40", "--seed", "2",
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"being written by process {builder.pid}" in err
    finally:
        output = _finish(builder, gate)
    built = output.split("built", 1)[1].split()[0]
    # The directory holds the dataset its builder announced, and only that one.
    assert json.loads((out / "meta.json").read_text())["dataset_id"] == built


def test_a_killed_builder_leaves_nothing_in_the_way(tmp_path, capsys):
    out, gate = tmp_path / "data", tmp_path / "go"
    builder, _ = _start(PAUSED_BUILDER, str(out), str(gate))
    _kill(builder)
    out.mkdir(exist_ok=True)
    leftover = out / ".train.npz.9z8y7x6w.tmp"
    leftover.write_bytes(b"half")
    assert main(["data", "build", "--source", "synthetic", "--limit", "40", "--seed", "1",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert not leftover.exists() and (out / "meta.json").is_file()
