"""Domain exceptions: every message names the file, URL or URI involved and what was expected."""

from __future__ import annotations


class ImagenetOpsError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(ImagenetOpsError, ValueError):
    """Invalid variation, tag, option or combination of them."""


class DownloadError(ImagenetOpsError):
    """No mirror delivered the file; the message lists every URL tried and why it failed."""


class ChecksumMismatch(ImagenetOpsError):
    """A file's digest matches none of the accepted checksums."""


class UnsafeArchiveError(ImagenetOpsError):
    """An archive member would escape the destination or is a device/special file."""


class ArchiveError(ImagenetOpsError):
    """An archive is unreadable or of an unsupported kind."""


class ValidationError(ImagenetOpsError):
    """Extracted content does not look like the expected artifact."""


class StorageError(ImagenetOpsError):
    """A sink could not be read or written (after retries)."""


class ModelCheckError(ValidationError):
    """A model file is unreadable, of another framework, or does not have the expected interface."""


class ImageError(ImagenetOpsError):
    """An image file is neither JPEG nor PNG, or it cannot be read or decoded."""


class SinkURIError(StorageError, ConfigError):
    """A sink URI that names no valid bucket or prefix: bad input, so a retry cannot help."""


class DiskFullError(StorageError):
    """A write failed because the filesystem is full (``ENOSPC``) or over quota (``EDQUOT``).

    The message names the path being written and the space left on its filesystem.

    Attributes:
        path: the file or folder being written, if known.
        free: bytes still free there, if they could be measured.
    """

    def __init__(self, message: str, path: str | None = None, free: int | None = None) -> None:
        super().__init__(message)
        self.path, self.free = path, free

    def __reduce__(self) -> tuple[type, tuple[str, str | None, int | None]]:  # crosses process pools intact
        return type(self), (str(self), self.path, self.free)
