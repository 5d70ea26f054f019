"""Throttled progress lines (count, rate, ETA) for long loops, and a one-line summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def human_bytes(n: float) -> str:
    """Return ``n`` bytes as a short decimal string, e.g. ``17.9 MB``."""
    for unit in ("GB", "MB", "KB"):
        if abs(n) >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    """Return a duration as ``1h02m03s`` / ``2m03s`` / ``3.2s``."""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


@dataclass
class Progress:
    """Log ``what: done/total (pct), rate, ETA`` at most every ``every`` seconds.

    Args:
        what: label printed at the start of each line.
        total: expected total (bytes or items); ``None`` if unknown.
        unit: ``"bytes"`` formats counts as sizes, anything else as plain counts.
        logger: where to log; defaults to this module's logger.
        every: minimum seconds between two lines.
        initial: amount already done before this run (e.g. a resumed download).
    """

    what: str
    total: int | None = None
    unit: str = "items"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    every: float = 5.0
    initial: int = 0
    done: int = field(init=False)
    _start: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        self.done = self.initial
        self._start = self._last = time.monotonic()

    def _fmt(self, n: float) -> str:
        return human_bytes(n) if self.unit == "bytes" else f"{int(n):,}"

    def rate(self) -> float:
        """Units per second over this run (the resumed part excluded)."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        return (self.done - self.initial) / elapsed

    def update(self, n: int) -> None:
        """Add ``n`` units and log a line if ``every`` seconds passed since the last one."""
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.logger.info("%s", self.line())

    def line(self) -> str:
        rate = self.rate()
        rate_s = f"{human_bytes(rate)}/s" if self.unit == "bytes" else f"{rate:,.1f} {self.unit}/s"
        if self.total:
            pct = 100.0 * self.done / self.total
            left = self.total - self.done
            eta = human_seconds(left / rate) if rate > 0 else "?"
            return f"{self.what}: {self._fmt(self.done)}/{self._fmt(self.total)} ({pct:.1f}%), {rate_s}, ETA {eta}"
        return f"{self.what}: {self._fmt(self.done)}, {rate_s}"

    def elapsed(self) -> float:
        return time.monotonic() - self._start
