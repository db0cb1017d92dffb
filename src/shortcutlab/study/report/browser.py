"""Open a report in a real headless Chromium and check it as a reader would.

Used by the test suite and by ``shortcutlab report DIR --screenshot FILE``. It drives the
system's Chromium through Playwright and never downloads a browser; the flags keep the
browser from phoning home on a machine without internet access.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shortcutlab.errors import ShortcutlabError

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    broken_images: int = 0
    images: int = 0
    screenshot: Path | None = None


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise ShortcutlabError("no Chromium found; install it (Debian: apt-get install chromium)")


@contextlib.contextmanager
def chromium_page(width: int = 1200, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A page of a fresh headless Chromium, and the list its console errors and uncaught
    exceptions are collected in; the browser is closed on exit, also after an error."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ShortcutlabError("the browser check needs playwright: "
                               "pip install playwright") from exc
    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def inspect_page(html_path: str | Path, screenshot: str | Path | None = None,
                 width: int = 1200, height: int | None = None) -> PageCheck:
    """Load ``html_path``; report console errors and images that failed to load.

    The screenshot covers the whole page, or its top ``height`` pixels."""
    html_path = Path(html_path).resolve()
    check = PageCheck()
    with chromium_page(width) as (page, errors):
        page.goto(html_path.as_uri(), wait_until="load")
        check.images = page.evaluate("document.images.length")
        check.broken_images = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".length")
        if screenshot is not None:
            check.screenshot = Path(screenshot)
            clip = None
            if height is not None:
                total = page.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": width, "height": min(height, total)}
            page.screenshot(path=str(check.screenshot), full_page=True, clip=clip)
    check.console_errors = errors
    return check
