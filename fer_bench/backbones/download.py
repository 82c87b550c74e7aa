"""`fer-bench weights fetch`: one published file into the cache, resumable and checked.

Bytes go to FILE.part; a cut connection keeps them and the next attempt asks for the rest with an
HTTP Range request. Only a file whose size and sha256 match the card is renamed into place
(atomically); a mismatch is deleted and refused."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import FerBenchError
from .sources import MissingWeightsError, WeightSource, sha256_file

CHUNK = 1 << 16


def offline() -> bool:
    """The user said there is no network (the Hub's own switch, or ours)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes")
               for k in ("HF_HUB_OFFLINE", "FER_BENCH_OFFLINE"))


def fetch(source: WeightSource, *, retries: int = 3, timeout: float = 30.0,
          show_progress: bool = True) -> Path:
    """Download the release file into the cache (resuming a partial one) and check it."""
    dest = source.path
    if dest.is_file():
        return dest
    if not source.direct:
        raise MissingWeightsError(source, "have no direct download link (the release is "
                                          "behind a landing page)")
    if offline():
        raise MissingWeightsError(source, "cannot be downloaded offline (HF_HUB_OFFLINE / "
                                          "FER_BENCH_OFFLINE is set)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download(source, part, timeout, show_progress)
            break
        except (ConnectionError, TimeoutError, urllib.error.URLError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502,
                                                                          503, 504):
                raise MissingWeightsError(source, f"could not be downloaded (HTTP {e.code})"
                                          ) from e
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                if have == 0 and isinstance(e, urllib.error.URLError):
                    raise MissingWeightsError(source, f"could not be downloaded ({e.reason}; "
                                                      "no network?)") from e
                raise FerBenchError(f"{source.url}: download interrupted after {have} bytes "
                                    f"({type(e).__name__}); run the fetch again to resume "
                                    f"from {part}") from e
            time.sleep(min(2.0 ** attempt, 10.0) * 0.1)
    _check(source, part)
    os.replace(part, dest)
    return dest


def _download(source: WeightSource, part: Path, timeout: float, show_progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    if source.size is not None and have == source.size:
        return  # a complete .part from a run that stopped before checking it
    req = urllib.request.Request(source.url, headers={"User-Agent": "fer-bench"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is whole
            return
        raise
    with resp:
        if have and resp.status != 206:  # the server ignored the range: start over
            have = 0
        total = resp.headers.get("Content-Length")
        total = int(total) + have if total is not None else source.size
        with open(part, "ab" if have else "wb") as f, _progress(source, total, have,
                                                                 show_progress) as advance:
            while block := resp.read(CHUNK):
                f.write(block)
                advance(len(block))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


class _progress:
    """A rich download bar (or nothing): `with _progress(...) as advance: advance(n)`."""

    def __init__(self, source: WeightSource, total: int | None, done: int, show: bool) -> None:
        self.show, self.total, self.done, self.label = show, total, done, source.file
        self.bar = None

    def __enter__(self):
        if self.show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=Console(stderr=True),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        return self._advance

    def _advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _check(source: WeightSource, part: Path) -> None:
    size = part.stat().st_size
    if source.size is not None and size != source.size:
        part.unlink()
        raise FerBenchError(f"{source.url}: got {size} bytes, the card says {source.size}; "
                            "the file was deleted (refused)")
    if source.sha256 is not None:
        got = sha256_file(part)
        if got != source.sha256:
            part.unlink()
            raise FerBenchError(f"{source.url}: sha256 {got} does not match the card's "
                                f"{source.sha256}; the file was deleted (refused)")
