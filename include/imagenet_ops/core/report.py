"""Data-quality reports: ``report/report.md`` and its PNG pictures, published beside an artifact.

Each artifact package builds its :class:`Report` from what it just made (counts, a few samples
read back); this module only lays the report out and writes it. The report's files go into the
sink before ``manifest.json``, and the manifest lists them, so a report is published, replaced
and cleaned up with the artifact it describes. Same data, same bytes: nothing here reads a clock,
so a report holds no timings (a run's duration and throughput are facts of the run: its note and
its Asset event's extra carry them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imagenet_ops.core.sinks import Sink

log = logging.getLogger(__name__)

REPORT_DIR = "report"
REPORTS_SWITCH = "IMAGENET_OPS_REPORTS"
"""``off`` skips the reports (a benchmark of the build alone, or a build whose report nobody reads)."""
REPORT_MD = f"{REPORT_DIR}/report.md"


def reports_enabled() -> bool:
    """Whether to build reports: yes unless ``IMAGENET_OPS_REPORTS=off`` (or ``0``/``false``/``no``)."""
    return os.environ.get(REPORTS_SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


def build_report(artifact: str, make: Callable[[], Report]) -> Report | None:
    """``make()`` unless reports are off (:func:`reports_enabled`), logging what building it cost.

    The log line (``<artifact> report: ... built in <cpu>s CPU``) is what ``bench/report_cost.py``
    reads from the CLI's own log, against the process's CPU: the same run, so no run-to-run noise.
    """
    if not reports_enabled():
        log.info("%s report: off (%s=off)", artifact, REPORTS_SWITCH)
        return None
    cpu, wall = time.process_time(), time.perf_counter()
    report = make()
    log.info(
        "%s report: %d picture(s), %s; built in %.3fs CPU, %.3fs",
        artifact,
        len(report.pictures),
        f"{len(report.problems)} check(s) failed" if report.problems else "all checks passed",
        time.process_time() - cpu,
        time.perf_counter() - wall,
    )
    return report


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """Up to ``count`` items evenly spread over ``items`` (first and last included): a report's fixed, fair sample."""
    if len(items) <= count:
        return list(items)
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)] if count > 1 else [items[0]]


def report_files(pictures: Sequence[str]) -> tuple[str, ...]:
    """The keys a report with ``pictures`` publishes: what a publish announces before writing them."""
    return (REPORT_MD, *(f"{REPORT_DIR}/{name}" for name in pictures))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@dataclass
class Report:
    """A markdown report under construction, with its pictures (``name.png`` -> PNG bytes)."""

    title: str
    lines: list[str] = field(default_factory=list)
    pictures: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def section(self, heading: str) -> Report:
        self.lines += ["", f"## {heading}", ""]
        return self

    def text(self, paragraph: str) -> Report:
        self.lines += [paragraph, ""]
        return self

    def facts(self, items: Mapping[str, Any]) -> Report:
        """A two-column table of named values."""
        return self.table(("", ""), [(f"**{k}**", v) for k, v in items.items()], header=False)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, header: bool = True, limit: int = 200) -> Report:
        """A markdown table; past ``limit`` rows, one line says how many more there are."""
        rows = list(rows)
        head = headers if header else [" "] * len(headers)
        if self.lines and self.lines[-1]:
            self.lines.append("")  # a table right after a list or a line would be read as part of it
        self.lines += ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(headers)]
        self.lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows[:limit]]
        if len(rows) > limit:
            self.lines.append(f"\n… and {len(rows) - limit} more rows.")
        self.lines.append("")
        return self

    def check(self, ok: bool, what: str) -> Report:
        """A pass/fail line; a failed check is also collected in :attr:`problems` (the run note shows them)."""
        if not ok:
            self.problems.append(what)
        self.lines.append(f"- {'✅' if ok else '❌'} {what}")
        return self

    def picture(self, name: str, data: bytes, caption: str) -> Report:
        """Add ``name`` (e.g. ``classes.png``) and show it here."""
        self.pictures[name] = data
        self.lines += ["", f"![{caption}]({name})", "", f"*{caption}*", ""]
        return self

    def markdown(self) -> str:
        status = "all checks passed" if not self.problems else f"{len(self.problems)} check(s) failed"
        return "\n".join([f"# {self.title}", "", f"Data-quality report: {status}.", "", *self.lines]).rstrip() + "\n"

    def files(self) -> dict[str, bytes]:
        """``{"report/report.md": …, "report/<picture>.png": …}``."""
        return {REPORT_MD: self.markdown().encode(), **{f"{REPORT_DIR}/{n}": d for n, d in sorted(self.pictures.items())}}

    def summary(self) -> dict[str, Any]:
        """What a caller shows of the report (the run note): its path, pictures and failed checks."""
        return {"report": REPORT_MD, "pictures": sorted(self.pictures), "problems": list(self.problems)}


def put_report(report: Report, sink: Sink) -> list[dict[str, Any]]:
    """Put the report's files into ``sink``; returns their manifest entries (path, size, sha256, CRC-32C checksum)."""
    import google_crc32c

    entries = []
    for key, data in report.files().items():
        sink.put_bytes(data, key)
        entries.append(
            {
                "path": key,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "checksum": f"crc32c:{google_crc32c.value(data):08x}",
            }
        )
    return entries
