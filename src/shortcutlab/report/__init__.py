"""The study's self-contained HTML report, rebuilt from the artifacts alone."""

from shortcutlab.report.document import Figure, Section, Table, Verdict, render_html
from shortcutlab.report.study_report import build_report

__all__ = ["Figure", "Section", "Table", "Verdict", "build_report", "render_html"]
