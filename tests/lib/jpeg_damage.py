"""Real JPEGs damaged the ways files get damaged: bytes flipped or overwritten after the scan start,
truncated, garbage inserted, a stray marker inside the scan data (test helpers, deterministic)."""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Iterator

from imagenet_ops.testing.samples import imagenet_like_jpeg

# Inside scan data libjpeg stops at FF 67 (no JPEG marker): TensorFlow fails "Unsupported marker
# type 0x67", OpenCV returns the rows above it, and the header still reads fine.
STRAY_MARKER = b"\xff\x67"


def scan_start(data: bytes) -> int:
    """Offset of the first scan's entropy-coded data (just after the SOS segment)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + (data[sos + 2] << 8 | data[sos + 3])


def at_fraction(data: bytes, fraction: float) -> int:
    """An offset ``fraction`` of the way through the first scan's data."""
    start = scan_start(data)
    return start + int((len(data) - 2 - start) * fraction)


def stray_marker(data: bytes, fraction: float = 0.5) -> bytes:
    """``data`` with :data:`STRAY_MARKER` inserted ``fraction`` of the way through the scan."""
    at = at_fraction(data, fraction)
    return data[:at] + STRAY_MARKER + data[at:]


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """``data`` cut ``fraction`` of the way through the scan (no end-of-image marker)."""
    return data[: at_fraction(data, fraction)]


def truncated_then_eoi(data: bytes, fraction: float = 0.5) -> bytes:
    """Cut mid-scan, then an EOI marker: libjpeg fills the rest from zeros with a warning (TF decodes it)."""
    return truncated(data, fraction) + b"\xff\xd9"


def base_images() -> dict[str, bytes]:
    """500x375 ImageNet-like JPEGs in the encodings ImageNet holds, plus restart markers and a tiny one."""
    return dict(_base_images())


@functools.cache
def _base_images() -> dict[str, bytes]:
    from PIL import Image

    from imagenet_ops.testing.preprocess_samples import sample_image

    rgb = Image.open(io.BytesIO(imagenet_like_jpeg(5)))
    out = {"baseline": imagenet_like_jpeg(5), "exif": sample_image("exif")}

    def save(key: str, im: Image.Image, **options: object) -> None:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", **options)
        out[key] = buf.getvalue()

    save("progressive", rgb, quality=90, progressive=True)
    save("gray", rgb.convert("L"), quality=90)
    save("cmyk", rgb.convert("CMYK"), quality=90)
    save("444-optimized", rgb, quality=95, subsampling=0, optimize=True)
    save("restart-markers", rgb, quality=90, restart_marker_blocks=4)
    save("tiny", rgb.resize((61, 47)), quality=75)
    return out


def damaged(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random damage of ``data``: ``(kind, bytes)``; most of them land after the scan start."""
    start, n = scan_start(data), len(data)
    kind = rng.choice(("flip", "overwrite", "insert", "delete", "truncate", "truncate+eoi", "marker", "zero-tail", "tail"))
    at = rng.randrange(start, n - 2)
    if kind == "flip":
        raw = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(start, n - 2)] ^= rng.randrange(1, 256)
        return kind, bytes(raw)
    if kind == "overwrite":
        raw = bytearray(data)
        for i in range(at, min(n, at + rng.randrange(1, 300))):
            raw[i] = rng.randrange(256)
        return kind, bytes(raw)
    if kind == "insert":
        return kind, data[:at] + rng.randbytes(rng.randrange(1, 200)) + data[at:]
    if kind == "delete":
        return kind, data[:at] + data[at + rng.randrange(1, 2000) :]
    if kind == "truncate":
        return kind, data[:at]
    if kind == "truncate+eoi":
        return kind, data[:at] + b"\xff\xd9"
    if kind == "marker":
        return kind, data[:at] + bytes((0xFF, rng.randrange(1, 255))) + data[at:]
    if kind == "zero-tail":
        return kind, data[:at] + bytes(n - at)
    return kind, data[: n - rng.randrange(1, 20)] + rng.randbytes(rng.randrange(0, 50))


def damage_cases(per_image: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``(label, bytes)``: ``per_image`` random damages of each of :func:`base_images`, deterministic."""
    rng = random.Random(seed)
    for key, data in base_images().items():
        for i in range(per_image):
            kind, bad = damaged(data, rng)
            yield f"{key}#{i}:{kind}", bad
