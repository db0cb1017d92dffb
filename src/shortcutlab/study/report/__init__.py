"""The study's self-contained HTML report frame: the document model, the page check in a
real browser, and ``shortcutlab report``. Each task's section lives in its task file."""

from shortcutlab.study.report.document import Figure, Section, Table, Verdict, render_html

__all__ = ["Figure", "Section", "Table", "Verdict", "render_html"]
