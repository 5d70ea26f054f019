"""Generic file operators: download from mirrors, verify checksums, extract archives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from imagenet_operators.masking import MasksURLSecrets

if TYPE_CHECKING:
    from airflow.sdk import Context


class ArchiveDownloadOperator(MasksURLSecrets, BaseOperator):
    """Download a file from the first mirror that delivers the accepted bytes.

    Resumes a partial download left by a failed try, retries connection errors and 5xx with
    backoff, and moves the file into place only once it verified.

    :param urls: mirror URLs tried in order. (templated)
    :param dest_dir: folder on the shared work volume for the file. (templated)
    :param md5: accepted md5 sums, any one passes; empty means unchecked. (templated)
    :param sha256: accepted sha256 sums, any one passes. (templated)
    :param filename: final file name; default the first URL's basename. (templated)
    :param verify_ssl: verify TLS certificates. (templated)
    """

    template_fields: Sequence[str] = ("urls", "dest_dir", "md5", "sha256", "filename", "verify_ssl")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        urls: Sequence[str] | str,
        dest_dir: str,
        md5: Sequence[str] | str = (),
        sha256: Sequence[str] | str = (),
        filename: str | None = None,
        verify_ssl: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.urls = urls
        self.dest_dir = dest_dir
        self.md5 = md5
        self.sha256 = sha256
        self.filename = filename
        self.verify_ssl = verify_ssl

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.core.digests import AcceptedChecksums
        from imagenet_ops.core.download import download

        result = download(
            urls=list(self.urls),
            dest_dir=Path(self.dest_dir),
            filename=self.filename or None,
            accepted=AcceptedChecksums.of(md5=self.md5, sha256=self.sha256),
            verify_ssl=bool(self.verify_ssl),
        )
        self.log.info("Downloaded %s", result.summary())
        return result.as_dict()


class ChecksumVerifyOperator(MasksURLSecrets, BaseOperator):
    """Verify a file handed over on the work volume against the accepted checksums.

    :param path: the file. (templated)
    :param md5: accepted md5 sums, any one passes. (templated)
    :param sha256: accepted sha256 sums, any one passes. (templated)
    """

    template_fields: Sequence[str] = ("path", "md5", "sha256")

    def __init__(self, *, path: str, md5: Sequence[str] | str = (), sha256: Sequence[str] | str = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.md5 = md5
        self.sha256 = sha256

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.core.digests import AcceptedChecksums, verify_file

        digests = verify_file(Path(self.path), AcceptedChecksums.of(md5=self.md5, sha256=self.sha256))
        self.log.info("Verified %s: %d bytes, md5 %s, sha256 %s", self.path, digests.size, digests.md5, digests.sha256)
        return {"path": str(self.path), **digests.as_dict()}


class ArchiveExtractOperator(MasksURLSecrets, BaseOperator):
    """Safely extract a .tar/.tar.gz/.gz into a folder renamed into place when complete.

    :param archive: the archive. (templated)
    :param dest: target folder (tar) or file (plain .gz). (templated)
    """

    template_fields: Sequence[str] = ("archive", "dest")

    def __init__(self, *, archive: str, dest: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.archive = archive
        self.dest = dest

    def execute(self, context: Context) -> dict[str, Any]:
        from imagenet_ops.core.extract import extract_archive

        result = extract_archive(archive=Path(self.archive), dest=Path(self.dest))
        self.log.info("Extracted %s: %d files, %d bytes into %s", self.archive, result.files, result.bytes, result.path)
        return result.as_dict()
