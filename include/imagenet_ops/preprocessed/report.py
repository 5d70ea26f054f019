"""A preprocessed set's data-quality report: sample tensors shown as pictures next to their sources.

Published as ``report/`` beside the set (:mod:`imagenet_ops.core.report`). It holds:

- a contact sheet: a few originals, each beside its published tensor read back *as the config
  declares it* and turned into a picture (:mod:`imagenet_ops.preprocessed.viewable`), so a wrong
  layout, channel order or mean shows at a glance; each pair's mean difference is listed too;
- the per-channel value histogram of the sampled tensors;
- the class histogram of the selected images (when labels are known);
- the skipped and bad images with their reasons.

It reads only a few samples back (:data:`SAMPLES`), so its
cost does not grow with the set (``bench/report_cost.py`` measures it against the build).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagenet_ops.core import charts
from imagenet_ops.core.progress import human_bytes
from imagenet_ops.core.report import Report, report_files, spread
from imagenet_ops.core.sinks import Sink
from imagenet_ops.imagenet.constants import NUM_CLASSES
from imagenet_ops.imagenet.images import ImageRef
from imagenet_ops.preprocessed.config import PreprocessConfig
from imagenet_ops.preprocessed.viewable import (
    channel_order,
    channels_first,
    mean_abs_difference,
    raw_dtype,
    source_crop,
    viewable,
)

log = logging.getLogger(__name__)

SAMPLES = 6
"""Images read back: each is shown on the contact sheet and counted in the value histogram."""
MATCH_LIMIT = 16.0
"""A tensor read as declared must be within this mean difference (of 255) of its source's centre crop."""
PICTURES = ("contact_sheet.png", "channel_values.png", "classes.png")
REPORT_FILES = report_files(PICTURES)


def _published_tensor(data: bytes, config: PreprocessConfig, *, npy: bool) -> np.ndarray:
    """A published file as an array: ``.npy`` parsed, a raw file read with the dtype and shape its config gives."""
    if npy:
        import io

        return np.load(io.BytesIO(data), allow_pickle=False)
    side = config.resolution
    shape = (3, side, side) if channels_first(config) else (side, side, 3)
    itemsize, rest = divmod(len(data), 3 * side * side)
    if rest or itemsize not in (1, 2, 4, 8):
        raise ValueError(f"{len(data)} bytes is not a {list(shape)} tensor of 1, 2, 4 or 8-byte values")
    return np.frombuffer(data, dtype=raw_dtype(config, itemsize)).reshape(shape)


def _samples(
    config: PreprocessConfig, sink: Sink, refs: Sequence[ImageRef], store: Any, report: Report
) -> tuple[list[list[tuple[str, np.ndarray]]], list[np.ndarray]]:
    """Contact-sheet rows and the tensors for the histogram, read back from the sink."""
    from imagenet_ops.imagenet.images import ImageReader

    npy = config.is_reference or config.extension == "npy"
    rows, tensors, table = [], [], []
    with ImageReader(store=store) as reader:
        for ref in spread(refs, SAMPLES):
            key = config.output_name(ref.name)
            data = sink.get_bytes(key)
            if data is None:
                report.check(False, f"{key} is listed but cannot be read back from {sink.uri}")
                continue
            try:
                tensor = _published_tensor(data, config, npy=npy)
                picture, exact = viewable(tensor, config)
            except ValueError as exc:
                report.check(False, f"{key}: not a tensor of the declared kind: {exc}")
                continue
            tensors.append(tensor)
            try:
                crop = source_crop(reader.read(ref), config)
            except Exception as exc:  # noqa: BLE001 - Pillow's errors vary; the source was preprocessed, so it decodes
                report.check(False, f"{ref.name}: the source cannot be shown: {exc}")
                continue
            difference = mean_abs_difference(picture, crop)
            table.append((ref.name, f"{tensor.dtype}{list(tensor.shape)}", f"{difference:.1f}", "" if exact else "stretched"))
            rows.append([(f"{ref.name[-13:-5]} source", crop), (f"tensor, {difference:.1f} off", picture)])
    if table:
        worst = max(float(t[2]) for t in table)
        report.check(
            worst <= MATCH_LIMIT,
            f"every sampled tensor, read as declared ({config.layout}, {channel_order(config)}), matches its source's "
            f"centre crop (largest mean difference {worst:.1f} of 255; limit {MATCH_LIMIT:g})",
        )
        report.table(("image", "tensor", "mean difference (of 255)", "note"), table)
    return rows, tensors


def preprocessed_report(
    *,
    config: PreprocessConfig,
    sink: Sink,
    refs: Sequence[ImageRef],
    published: Sequence[str],
    reasons: Mapping[str, str],
    val_map: Path | None,
    total_bytes: int,
    store: Any = None,
) -> Report:
    """Build the report of a set whose tensors are in ``sink`` (called before its manifest is written).

    Args:
        config: the set's config.
        sink: where the tensors are.
        refs: every selected image.
        published: the names of the images that have an output (the rest are in ``reasons``).
        reasons: bad or skipped image -> why.
        val_map: the labels (``<name> <label>``), for the class histogram; ``None``: not shown.
        total_bytes: the tensors' total size.
        store: reads object-storage sources.
    """
    report = Report(title=f"Preprocessed ImageNet {config.dataset_type} set")
    facts: dict[str, Any] = {
        "CM tags": config.tags or "(none)",
        "preprocessor": config.reference_function or "generic",
        "layout / channels": f"{config.layout}, {channel_order(config)}",
        "images": f"{len(published)} published of {len(refs)} selected",
        "bytes": human_bytes(total_bytes),
    }
    report.facts(facts)

    report.section("Samples: source beside tensor")
    good = [r for r in refs if r.name in set(published)]
    rows, tensors = _samples(config, sink, good, store, report)
    if rows:
        report.picture(
            "contact_sheet.png",
            charts.contact_sheet(
                [rows[i] + rows[i + 1] if i + 1 < len(rows) else rows[i] for i in range(0, len(rows), 2)],
                tile=112,
                title="source centre crop | its tensor read as declared",
            ),
            "Each source's centre crop beside its published tensor, read with the declared layout, channel order and "
            "normalisation; a mismatch shows as stripes, swapped colours or a colour cast.",
        )
    if tensors:
        axis = 0 if channels_first(config) else -1
        step = 4  # every 4th value of each channel: the histogram's shape, at a quarter of the cost
        channels = [np.concatenate([np.take(t, c, axis=axis).ravel()[::step] for t in tensors]) for c in range(3)]
        report.picture(
            "channel_values.png",
            charts.channel_histograms(
                f"values per channel ({len(tensors)} sampled tensors)", channels, names=list(channel_order(config))
            ),
            "Per-channel value histogram of the sampled tensors: a missing mean subtraction or scale shifts or widens it.",
        )

    report.section("Classes")
    if val_map is not None and Path(val_map).is_file():
        from imagenet_ops.imagenet.labels import read_val_map

        labels = dict(read_val_map(Path(val_map)))
        counts = Counter(labels[n] for n in published if n in labels)
        report.text(f"{sum(counts.values())} published images in {len(counts)} of {NUM_CLASSES} classes.")
        report.picture(
            "classes.png",
            charts.bar_chart("selected images per class", [counts.get(i, 0) for i in range(NUM_CLASSES)]),
            "Published images per class label 0..999.",
        )
    else:
        report.text("No labels were given for this set: no class histogram.")

    report.section("Skipped and bad images")
    if reasons:
        report.check(False, f"{len(reasons)} selected image(s) were skipped as bad (listed in bad_images.txt)")
        report.table(("image", "reason"), sorted(reasons.items()), limit=100)
    else:
        report.check(True, "no selected image was skipped")
    return report
