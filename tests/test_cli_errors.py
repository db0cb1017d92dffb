"""The command's error boundary: whatever escapes becomes one line, never a traceback."""

from __future__ import annotations

import pytest

from shortcutlab import cli


def test_an_unexpected_error_is_one_line_with_a_log_of_the_traceback(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("SHORTCUTLAB_LOG_DIR", str(tmp_path / "logs"))

    def broken(args):
        raise RuntimeError("the flux capacitor is empty\nsecond line")

    monkeypatch.setattr("shortcutlab.data.commands._styles", broken)
    assert cli.main(["data", "styles", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "RuntimeError: the flux capacitor is empty" in err and "--debug" in err
    (log,) = (tmp_path / "logs").iterdir()
    assert "Traceback" in log.read_text() and "flux capacitor" in log.read_text()
    with pytest.raises(RuntimeError):  # --debug, anywhere on the line, shows it instead
        cli.main(["data", "styles", "--out", str(tmp_path / "s.png"), "--debug"])


def test_an_out_path_that_is_a_file_is_named_not_a_traceback(tmp_path, capsys):
    in_the_way = tmp_path / "taken"
    in_the_way.write_text("a file")
    code = cli.main(["data", "build", "--source", "synthetic", "--limit", "30",
                     "--out", str(in_the_way / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(in_the_way) in err


def test_an_interrupt_says_the_exact_command_to_continue(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("shortcutlab.train.commands.run_train", interrupted)
    argv = ["train", "--data", "d", "--out", "r"]
    assert cli.main(argv) == 130
    assert "continue with: shortcutlab train --data d --out r --resume" in capsys.readouterr().err
