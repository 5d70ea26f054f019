"""``tf.train.Example`` records without TensorFlow: the generic encoder and the ImageNet record.

Byte-identical to TF's ``Example.SerializeToString(deterministic=True)``; framed into TFRecord
files by :mod:`imagenet_ops.training.tfrecord`, which re-exports these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = tuple(bytes((i,)) for i in range(0x80))  # one-byte varints


# --- tf.train.Example wire format ----------------------------------------------------------------
# Example{1: Features}; Features{1: map<string, Feature>}; map entry{1: key, 2: Feature};
# Feature{1: BytesList, 3: Int64List}; BytesList{1: repeated bytes}; Int64List{1: packed int64}.


def _varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:  # an image's length: most of the varints the hot path makes
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int64_varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"int64 feature value {value} is out of range")
    return _varint(value & 0xFFFFFFFFFFFFFFFF)  # negatives: 10-byte two's complement


def _entry_prefix(key: bytes) -> bytes:
    """Map-entry bytes before the Feature's length: ``0a klen key 12``."""
    return b"\x0a" + _varint(len(key)) + key + b"\x12"


def _int64_entry(prefix: bytes, values: Sequence[int]) -> bytes:
    packed = b"".join([_int64_varint(v) for v in values])
    int64_list = b"\x0a" + _varint(len(packed)) + packed if packed else b""
    feature = b"\x1a" + _varint(len(int64_list)) + int64_list
    inner = prefix + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(inner)) + inner


def _bytes_entry_head(prefix: bytes, values_len: int) -> bytes:
    """Entry bytes up to the BytesList's elements, whose encoded size is ``values_len``."""
    feature_len = 1 + len(_varint(values_len)) + values_len
    inner_len = len(prefix) + len(_varint(feature_len)) + feature_len
    return b"\x0a" + _varint(inner_len) + prefix + _varint(feature_len) + b"\x0a" + _varint(values_len)


def _single_bytes_head(prefix: bytes, size: int) -> bytes:
    """Entry bytes of a one-element bytes feature up to its ``size``-byte value (the hot path's: 4 varints).

    ``_bytes_entry_head(prefix, values_len) + 0a varint(size)``, with ``values_len`` that element's size.
    """
    element = _varint(size)
    values_len = 1 + len(element) + size
    values = _varint(values_len)
    feature_len = 1 + len(values) + values_len
    feature = _varint(feature_len)
    inner_len = len(prefix) + len(feature) + feature_len
    return b"".join((b"\x0a", _varint(inner_len), prefix, feature, b"\x0a", values, b"\x0a", element))


def _bytes_entry_parts(prefix: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A single-value bytes feature as (head, value), so a large value is copied only once."""
    return _single_bytes_head(prefix, len(value)), value


def _upb_key_order(raw_key: bytes) -> tuple[int, ...]:
    """Sort key giving the map-entry order of upb's deterministic serialization (TF's Python protobuf).

    upb orders string keys bytewise, except that a key which is a proper prefix of another comes
    *after* it (``"ab"`` before ``"a"``, ``""`` last); C++ protobuf puts it before. An end marker
    above every byte value reproduces upb. Keys without prefix relations (the ImageNet ones) sort
    the same either way.
    """
    return (*raw_key, 256)


def _is_bytes(value: object) -> bool:
    return isinstance(value, bytes | bytearray)


def encode_example(features: Mapping[str, bytes | int | Sequence[int] | Sequence[bytes]]) -> bytes:
    """Serialize a ``tf.train.Example`` with bytes and int64 features, keys in sorted order.

    The result equals ``tf.train.Example(...).SerializeToString(deterministic=True)`` for the
    same content, including upb's placement of a key after the keys it is a prefix of.

    Args:
        features: key -> ``bytes`` (one-element BytesList), ``int`` (one-element Int64List),
            or a non-empty sequence of only bytes or only ints.

    Returns:
        The serialized Example.

    Raises:
        TypeError: a key is not a ``str``, or a value is a ``str``, float or mixed sequence.
        ValueError: an int is outside int64, or a sequence is empty (its type is ambiguous).
    """
    parts: list[bytes] = []
    for key in features:
        if not isinstance(key, str):
            raise TypeError(f"feature key {key!r} is not a str")
    for raw_key, key in sorted(((k.encode(), k) for k in features), key=lambda pair: _upb_key_order(pair[0])):
        value = features[key]
        prefix = _entry_prefix(raw_key)
        if _is_bytes(value):
            parts.extend(_bytes_entry_parts(prefix, bytes(value)))
        elif isinstance(value, int):
            parts.append(_int64_entry(prefix, (value,)))
        elif isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"feature {key!r}: unsupported value type {type(value).__name__} (use bytes, int or a list of them)")
        elif not value:
            raise ValueError(f"feature {key!r}: empty list (cannot tell BytesList from Int64List)")
        elif all(isinstance(v, int) for v in value):
            parts.append(_int64_entry(prefix, value))
        elif all(_is_bytes(v) for v in value):
            elements = b"".join([b"\x0a" + _varint(len(v)) + bytes(v) for v in value])
            parts += (_bytes_entry_head(prefix, len(elements)), elements)
        else:
            raise TypeError(f"feature {key!r}: a list must hold only bytes or only ints")
    return b"".join([b"\x0a", _varint(sum(map(len, parts))), *parts])


# --- the ImageNet record (spec 1.4) ----------------------------------------------------------------
# Sorted keys: channels, class/label, class/synset, colorspace, encoded, filename, format, height, width.
# The constant entries are built once; label/height/width/synset entries are memoised (few distinct values).
_CHANNELS = _int64_entry(_entry_prefix(b"image/channels"), (3,))
_COLORSPACE = b"".join(_bytes_entry_parts(_entry_prefix(b"image/colorspace"), b"RGB"))
_FORMAT = b"".join(_bytes_entry_parts(_entry_prefix(b"image/format"), b"JPEG"))
_FIXED_LEN = len(_CHANNELS) + len(_COLORSPACE) + len(_FORMAT)
_ENCODED = _entry_prefix(b"image/encoded")
_FILENAME = _entry_prefix(b"image/filename")
_MEMO_LIMIT = 1 << 16  # ints memoised below this value; each memo holds at most this many entries


class _IntEntries(dict[int, bytes]):
    """``entries[v]`` is the whole map entry of a scalar int64 feature, built on first use."""

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.prefix = _entry_prefix(key)

    def __missing__(self, value: int) -> bytes:
        entry = _int64_entry(self.prefix, (value,))
        if 0 <= value < _MEMO_LIMIT:
            self[value] = entry
        return entry


class _BytesEntries(dict[str, bytes]):
    """``entries[s]`` is the whole map entry of a one-element bytes feature holding ``s`` as UTF-8."""

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.prefix = _entry_prefix(key)

    def __missing__(self, value: str) -> bytes:
        entry = b"".join(_bytes_entry_parts(self.prefix, value.encode()))
        if len(self) < _MEMO_LIMIT:
            self[value] = entry
        return entry


_LABEL = _IntEntries(b"image/class/label")
_HEIGHT = _IntEntries(b"image/height")
_WIDTH = _IntEntries(b"image/width")
_SYNSET = _BytesEntries(b"image/class/synset")


def imagenet_example_parts(
    *, encoded: bytes | memoryview, height: int, width: int, label: int, synset: str, filename: str
) -> tuple[bytes, bytes | memoryview, bytes]:
    """The reference converter's Example for one image (format JPEG, colorspace RGB, 3 channels).

    Args:
        encoded: the image file's bytes (a memoryview is returned as it is: only its length is used).
        height: decoded pixel rows.
        width: decoded pixel columns.
        label: class label, 1..1000 in the reference.
        synset: wnid, e.g. ``n01440764``.
        filename: basename, e.g. ``n01440764_10026.JPEG``.

    Returns:
        ``(head, encoded, tail)``: the serialized Example, byte-identical to TF's deterministic
        serialization, in three pieces so the image bytes are never joined into a new payload
        (:meth:`imagenet_ops.training.tfrecord.TFRecordWriter.write_parts` frames and buffers them).

    Raises:
        ValueError: an int is outside int64.
    """
    label_entry, synset_entry = _LABEL[label], _SYNSET[synset]
    height_entry, width_entry = _HEIGHT[height], _WIDTH[width]
    encoded_head = _single_bytes_head(_ENCODED, len(encoded))
    name = filename.encode()
    filename_entry = _single_bytes_head(_FILENAME, len(name)) + name
    features_len = (
        _FIXED_LEN
        + len(label_entry)
        + len(synset_entry)
        + len(encoded_head)
        + len(encoded)
        + len(filename_entry)
        + len(height_entry)
        + len(width_entry)
    )
    head = b"".join((b"\x0a", _varint(features_len), _CHANNELS, label_entry, synset_entry, _COLORSPACE, encoded_head))
    return head, encoded, b"".join((filename_entry, _FORMAT, height_entry, width_entry))


def imagenet_example(*, encoded: bytes, height: int, width: int, label: int, synset: str, filename: str) -> bytes:
    """The reference converter's Example for one image (format JPEG, colorspace RGB, 3 channels).

    ``b"".join(imagenet_example_parts(...))``; see there.

    Args:
        encoded: the image file's bytes.
        height: decoded pixel rows.
        width: decoded pixel columns.
        label: class label, 1..1000 in the reference.
        synset: wnid, e.g. ``n01440764``.
        filename: basename, e.g. ``n01440764_10026.JPEG``.

    Returns:
        The serialized Example, byte-identical to TF's deterministic serialization.

    Raises:
        ValueError: an int is outside int64.
    """
    return b"".join(
        imagenet_example_parts(encoded=encoded, height=height, width=width, label=label, synset=synset, filename=filename)
    )
