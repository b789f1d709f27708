"""The benchmark's history: generated once per set of parameters and kept under
``run/bench/cache/``, then read back as (key, value) messages for ``mappa.inbound.v1``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra import generator

# The MAPPA reference and eventId of a generated line, found without decoding the JSON:
# the generator writes compact JSON with the eventId first and the MAPPA identifier first.
_MAPPA = re.compile(rb'"type":"MAPPA","value":"([^"]+)"')
_EVENT_ID = re.compile(rb'^\{"eventId":"([^"]+)"')


@dataclass(frozen=True)
class History:
    path: Path
    lines: int
    mean_bytes: float
    generated_seconds: float | None  # None: taken from the cache

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The lines ``start`` to ``stop`` (exclusive) as message values."""
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle):
                if stop is not None and number >= stop:
                    return
                if number >= start:
                    yield raw.rstrip(b"\n")


def mappa_key(value: bytes) -> bytes | None:
    """The message key ``mappa produce`` uses: the MAPPA reference (None if unreadable)."""
    found = _MAPPA.search(value)
    if found:
        return found.group(1)
    try:
        identifiers = json.loads(value)["personReference"]["identifiers"]
        return str(next(i["value"] for i in identifiers if i["type"] == "MAPPA")).encode()
    except Exception:
        return None  # an unreadable line still goes in; ingest dead-letters it


def event_id(value: bytes) -> str | None:
    found = _EVENT_ID.match(value)
    return found.group(1).decode() if found else None


def cached_history(
    cache: Path, first_year: int, last_year: int, offenders: int, seed: int
) -> History:
    """The national history for these parameters, generated if not cached yet.

    The key holds the generator's own source hash too, so a change to the generator never
    reuses a history it would no longer produce.
    """
    source = Path(generator.__file__).read_bytes()
    version = hashlib.sha256(source).hexdigest()[:10]
    stem = f"national-{first_year}-{last_year}-{offenders}-s{seed}-g{version}"
    path, meta_path = cache / f"{stem}.jsonl", cache / f"{stem}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return History(path, int(meta["lines"]), float(meta["mean_bytes"]), None)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.monotonic()
    lines = generator.write_national_history(partial, first_year, last_year, offenders, seed)
    seconds = time.monotonic() - started
    partial.rename(path)
    mean = (path.stat().st_size - lines) / max(lines, 1)  # without the newlines
    meta = {"lines": lines, "mean_bytes": round(mean, 1), "generated_seconds": round(seconds, 1)}
    meta_path.write_text(json.dumps(meta))
    return History(path, lines, mean, seconds)
