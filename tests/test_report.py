"""The HTML report: self-contained, honest about misses, and clean in a real browser."""

from __future__ import annotations

import re
import shutil

import pytest

from shortcutlab.study.report.document import Figure, Section, Table, Verdict, render_html


def test_render_embeds_images_and_shows_every_verdict(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure_path = tmp_path / "fig.png"
    plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [1, 0])
    plt.savefig(figure_path)
    plt.close("all")
    section = Section("t", "Task", asked="ask", did="did", verdicts=[
        Verdict("above 95%", "96.0%", True), Verdict("below 20%", "35.0%", False),
        Verdict("r2 >= 0.9", "n/a", None)],
        figures=[Figure(figure_path, "a figure")], tables=[Table("T", ["a", "b"], [[1, "<x>"]])])
    html = render_html("title", "sub", [section])
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    assert html.count(">missed<") == 2  # in the overview and in the section
    assert html.count(">not measured<") == 2
    assert "&lt;x&gt;" in html  # table cells are escaped


@pytest.mark.browser
def test_report_opens_cleanly_in_chromium(tmp_path, tiny_data):
    from shortcutlab.artifacts import write_json
    from shortcutlab.study import build_report
    from shortcutlab.study.report.browser import inspect_page

    # A study directory with the data stage's artifacts is enough to exercise the report.
    shutil.copytree(tiny_data, tmp_path / "data" / "dataset")
    write_json(tmp_path / "summary.json", {"quick": True, "stages": {"data": {
        "config": {"bias": 0.95, "style": "noise"}, "sizes": {"train": 400},
        "aligned_share": {"train": 0.95, "test_hard": 0.0}}}})
    path = build_report(tmp_path)
    check = inspect_page(path, screenshot=tmp_path / "shot.png")
    assert check.console_errors == []
    assert check.broken_images == 0
    png = (tmp_path / "shot.png").read_bytes()
    assert len(png) > 10_000
    _assert_not_blank(tmp_path / "shot.png")
    assert re.search(r">met<", path.read_text())


def _assert_not_blank(png_path):
    import matplotlib.image

    pixels = matplotlib.image.imread(png_path)
    assert pixels.std() > 0.05, "the screenshot is blank"
