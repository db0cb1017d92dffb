"""One writer per run and dataset directory: a second writer is refused, a killed one's
lock and temporary files are cleared by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shortcutlab.artifacts import writer_lock
from shortcutlab.cli import main
from shortcutlab.errors import ShortcutlabError

SRC = str(Path(__file__).resolve().parents[1] / "src")
HOLD = textwrap.dedent("""
    import sys, time
    from shortcutlab.artifacts import writer_lock
    with writer_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def holder(directory: Path) -> subprocess.Popen:
    """A process that holds ``directory``'s writer lock until it is killed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get(
        "PYTHONPATH", "")) if p)}
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)],
                               stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    return process


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


TRAIN = ["--preset", "lazy", "--steps", "6", "--eval-every", "3", "--batch-size", "16",
         "--model-arg", "width=4", "--model-arg", "hidden=8", "--threads", "1"]


def test_a_second_trainer_is_refused_and_the_winners_run_stays_intact(tiny_data, tmp_path,
                                                                    capsys):
    run = tmp_path / "run"
    process = holder(run)
    try:
        assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN]) == 2
        err = capsys.readouterr().err
        assert f"being written by process {process.pid}" in err and "Traceback" not in err
        assert not run.exists() or not any(run.iterdir())  # the refused one wrote nothing
    finally:
        kill(process)
    # The killed holder's lock is no obstacle, and the next writer clears its leftovers.
    run.mkdir(exist_ok=True)
    leftover = run / ".metrics.json.ab12cd34.tmp"
    leftover.write_text("half written")
    stranger = run / "notes.tmp"  # not a name our writes make: kept
    stranger.write_text("mine")
    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN]) == 0
    assert not leftover.exists() and stranger.exists()
    assert (run / "model.pt").is_file()
    # A resume while another writer holds the run is refused too; alone, it returns the run.
    process = holder(run)
    try:
        assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN,
                     "--resume"]) == 2
    finally:
        kill(process)
    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--resume"]) == 0


def test_a_second_dataset_build_is_refused(tmp_path, capsys):
    out = tmp_path / "data"
    process = holder(out)
    try:
        assert main(["data", "build", "--source", "synthetic", "--limit", "40",
                     "--out", str(out)]) == 2
        assert "being written by process" in capsys.readouterr().err
    finally:
        kill(process)
    assert main(["data", "build", "--source", "synthetic", "--limit", "40", "--out", str(out)]) == 0


def test_the_lock_is_reentrant_in_one_process_and_released_after_an_error(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), writer_lock(target), writer_lock(target):
        raise RuntimeError("boom")
    with writer_lock(target):  # released: taken again at once
        pass
    process = holder(target)
    try:
        with pytest.raises(ShortcutlabError, match=str(process.pid)), writer_lock(target):
            pass
    finally:
        kill(process)
