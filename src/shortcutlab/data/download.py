"""Resumable, verified, atomic HTTP downloads (standard library only).

A download streams into ``NAME.part`` beside its destination. If it is interrupted, the
next call asks the server for the rest with an HTTP ``Range`` request (a server that
ignores it simply sends the whole file again). Only when the complete file matches its
published sha256 is it renamed to ``NAME``; a file that does not match is deleted, so a
bad mirror never leaves anything that a later run could mistake for data.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from shortcutlab import __version__
from shortcutlab.artifacts import sha256_file
from shortcutlab.errors import ChecksumError, ShortcutlabError
from shortcutlab.progress import progress

USER_AGENT = f"shortcutlab/{__version__} (+https://pypi.org/project/shortcutlab)"
_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def download(url: str, dest: str | os.PathLike, sha256: str, size: int | None = None,
             timeout: float = 30.0, desc: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there with the right sha256."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is None or offset < size:
        _fetch_into(url, part, offset, size, timeout, desc or dest.name)
    actual = sha256_file(part)
    if actual != sha256:
        part.unlink()
        raise ChecksumError(f"{url} has sha256 {actual[:16]}..., not the published "
                            f"{sha256[:16]}...; the mirror serves a different file")
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, offset: int, size: int | None, timeout: float,
                desc: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ShortcutlabError(f"{url}: only http:// and https:// URLs are fetched")
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part is complete
            return
        raise ShortcutlabError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise ShortcutlabError(f"{url}: {reason}") from exc
    with response:
        resumed = offset and response.status == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0  # the server sends the whole file
        length = response.headers.get("Content-Length")
        announced = offset + int(length) if length and length.isdigit() else None
        if size is not None and announced is not None and announced != size:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url} is {announced} bytes, not the published {size}; "
                                "the mirror serves a different file")
        total = size if size is not None else announced
        mode = "ab" if resumed else "wb"
        received = offset
        bar = progress(total=total, initial=offset, desc=desc, unit="B", unit_scale=True,
                       unit_divisor=1024)
        try:
            with open(part, mode) as handle:
                while block := response.read(_BLOCK):
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
                handle.flush()
                os.fsync(handle.fileno())
        except (OSError, http.client.HTTPException) as exc:
            raise ShortcutlabError(
                f"{url}: download interrupted after {received} bytes ({exc}); "
                "run the same command again to resume it") from exc
        finally:
            bar.close()
    if total is not None and received < total:
        raise ShortcutlabError(f"{url}: the connection closed after {received} of {total} "
                               "bytes; run the same command again to resume it")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None
