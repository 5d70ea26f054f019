"""ImageNet aux files (CM recipe get-dataset-imagenet-aux): the artifact's declaration.

The archive ``caffe_ilsvrc12.tar.gz`` is flat and holds 8 files (:data:`AUX_FILES`); only
``val.txt`` (and ``synsets.txt``) are used downstream. Its mirrors serve *different bytes*
(berkeleyvision vs dropbox/armi), so every source accepts both md5s, as CM's CHECKSUM/CHECKSUM1
pair does.

Declared here: ``AUX_TABLE`` (the CM variations and options), :func:`resolve_aux_config`,
:class:`AuxJob` and :func:`resolve_job` (the run's typed job), ``VERSION`` and ``RELEASE_NOTES``.
The steps (download, verify, validate, publish) are in :mod:`imagenet_ops.aux.pipeline`; the DAG's
tasks, which hand the archive over through the run's staging area, in :mod:`imagenet_ops.aux.steps`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

from imagenet_ops.core.digests import AcceptedChecksums
from imagenet_ops.core.download import filename_from_url
from imagenet_ops.core.errors import ConfigError
from imagenet_ops.core.jobs import Artifact, Job
from imagenet_ops.core.lineage import AUX_ARTIFACT
from imagenet_ops.core.variations import (
    SKIP_SSL_VERIFICATION,
    Choice,
    Group,
    Option,
    VariationTable,
    md5_option,
    source_urls,
    url_option,
)

log = logging.getLogger(__name__)

ARTIFACT = AUX_ARTIFACT  # the dataset artifacts name it as their labels' source

# The artifact's version: what a publish holds (the files, manifest, env). It is recorded in no
# output yet: the manifest and the cache key carry the package's ``library_version``, and adding
# this one there would change every published manifest.
VERSION = "1.1.0"
# Changes to what is published or accepted, newest first (TFDS style), from the git history.
RELEASE_NOTES = {
    "1.1.0": (
        "2026-12-01. Only the 8 aux files are published: other members of the archive are dropped with a "
        "warning. Archives that expand past 8 GiB, or more than 100x past 64 MiB, are refused. val.txt is read by "
        "the one strict labels parser: an empty line, a line without exactly two fields, a label that is not an "
        "integer and a repeated image name are refused, naming the file and the line. URL credentials are recorded "
        "as *** in manifest.json and left out of the cache key. One writer per output: a publish takes the "
        "output's lease, and the files of an earlier artifact or of a killed run are removed before the new ones "
        "are written."
    ),
    "1.0.0": (
        "2026-11-21. First release: caffe_ilsvrc12.tar.gz from the berkeleyvision, dropbox or armi.in mirror with "
        "a fallback mirror, both mirrors' md5s accepted; a custom url, md5 and sha256; safe extraction (a bad "
        "header after the first member or a truncated gzip stream is an error); the 8 files, 1000 sorted wnids "
        "and 50,000 validation labels checked; published with manifest.json and the env CM_DATASET_AUX_PATH, "
        "CM_DATASET_AUX_VER."
    ),
}

ARCHIVE_NAME = "caffe_ilsvrc12.tar.gz"
AUX_FILES = (
    "synsets.txt",
    "synset_words.txt",
    "val.txt",
    "train.txt",
    "test.txt",
    "det_synset_words.txt",
    "imagenet_mean.binaryproto",
    "imagenet.bet.pickle",
)

BERKELEYVISION_URL = "http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz"
DROPBOX_URL = "https://www.dropbox.com/s/92n2fyej3lzy3s3/caffe_ilsvrc12.tar.gz"
GO_URL = "https://armi.in/files/caffe_ilsvrc12.tar.gz"
BERKELEYVISION_MD5 = "f963098ea0e785a968ca1eb634003a90"
DROPBOX_MD5 = "ee346d67141e476df9c1a3f813552503"

AUX_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(
        Group(
            name="source",
            title="Download source",
            description="Mirror tried first; the fallback mirror follows. Mirrors serve different bytes, both md5s are accepted.",
            tag_prefix="from.",
            default="berkeleyvision",
            choices=(
                Choice(
                    "berkeleyvision",
                    "dl.caffe.berkeleyvision.org (http only, often down)",
                    {"urls": (BERKELEYVISION_URL, DROPBOX_URL), "md5": (BERKELEYVISION_MD5, DROPBOX_MD5)},
                ),
                Choice(
                    "dropbox", "Dropbox", {"urls": (DROPBOX_URL, BERKELEYVISION_URL), "md5": (DROPBOX_MD5, BERKELEYVISION_MD5)}
                ),
                Choice(
                    "go",
                    "armi.in (MLCommons automation default)",
                    {"urls": (GO_URL, DROPBOX_URL), "md5": (DROPBOX_MD5, BERKELEYVISION_MD5)},
                ),
            ),
        ),
        Group(
            name="version",
            title="Dataset version",
            description="ImageNet release the aux files belong to.",
            default="2012",
            choices=(Choice("2012", "ILSVRC 2012", {"version": "2012"}),),
        ),
    ),
    options=(
        url_option(
            "url",
            title="Custom URL",
            description="Download from this URL instead of the source's mirrors (an internal mirror or artifact store).",
        ),
        md5_option(
            "md5",
            title="Custom md5",
            description="Accepted md5 of the archive; replaces the source's md5 list.",
        ),
        Option(
            "sha256",
            "string",
            "Custom sha256",
            "Accepted sha256 of the archive. Alone it replaces the source's md5 list; with a custom md5 both are checked.",
            section="Custom source",
            pattern=r"^[0-9a-fA-F]{64}$",
        ),
        SKIP_SSL_VERIFICATION,
    ),
)


@dataclass(frozen=True)
class AuxConfig:
    """Everything one aux build depends on, resolved from variations and options."""

    source: str
    version: str
    urls: tuple[str, ...]
    md5: tuple[str, ...]
    sha256: tuple[str, ...] = ()
    verify_ssl: bool = True
    filename: str = ARCHIVE_NAME

    @property
    def accepted(self) -> AcceptedChecksums:
        return AcceptedChecksums.of(md5=self.md5, sha256=self.sha256)

    def as_params(self) -> dict[str, Any]:
        """JSON-friendly form (XCom, manifest, cache key)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AuxConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def resolve_aux_config(given: Mapping[str, Any] | None = None, *, variations: str | Iterable[str] | None = None) -> AuxConfig:
    """Resolve form fields / CLI options and CM tags into an :class:`AuxConfig`.

    A custom ``url`` replaces the mirror list and keeps the source's checksums unless ``md5``
    or ``sha256`` is given too (an internal mirror usually serves the same bytes).

    Raises:
        ConfigError: unknown tag/option, or a custom checksum without any way to download.
    """
    sel = AUX_TABLE.selections(given, variations)
    values = AUX_TABLE.resolve(sel)
    urls = source_urls(values["urls"], url=sel["url"])
    md5 = (sel["md5"],) if sel["md5"] else (() if sel["sha256"] else tuple(values["md5"]))
    if sel["url"] and not (sel["md5"] or sel["sha256"]):
        log.info("custom URL %s is checked against the %s source's md5s %s", sel["url"], sel["source"], ", ".join(md5))
    filename = filename_from_url(urls[0]) if sel["url"] else ARCHIVE_NAME
    if not filename.endswith((".tar.gz", ".tgz", ".tar")):
        raise ConfigError(f"custom URL {sel['url']} does not name a .tar.gz/.tgz/.tar archive")
    return AuxConfig(
        source=sel["source"],
        version=values["version"],
        urls=urls,
        md5=md5,
        sha256=(sel["sha256"],) if sel["sha256"] else (),
        verify_ssl=not sel["skip_ssl_verification"],
        filename=filename,
    )


@dataclass(frozen=True, kw_only=True)
class AuxJob(Job):
    """The run's job: the resolved config, the sink and the work dir.

    In XCom the config's fields are also at the top level (``urls``, ``md5``, ``filename`` ...),
    as the resolve task has always returned them (its per-key XComs); they are copies of
    ``config`` and are dropped when the job is rebuilt (every step now takes the whole job). The aux reads no input
    locations, so ``source_conn_id`` stays unset and is not written to XCom.
    """

    config_type: ClassVar[type] = AuxConfig
    config: AuxConfig

    XCOM_KEYS: ClassVar[tuple[str, ...]] = ("config", "work_dir", "sink_uri", "conn_id")

    def to_xcom(self) -> dict[str, Any]:
        """The config's fields, then ``config``, ``work_dir``, ``sink_uri``, ``conn_id``."""
        data = super().to_xcom()
        out = {**data["config"], **{k: data[k] for k in self.XCOM_KEYS}}
        if self.source_conn_id is not None:
            out["source_conn_id"] = self.source_conn_id
        return out

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Self:
        """The job :meth:`to_xcom` wrote, from ``config`` (the top-level copies of its fields are dropped)."""
        copies = {f.name for f in dataclasses.fields(AuxConfig)}
        return super().from_xcom({k: v for k, v in data.items() if k not in copies})


def resolve_job(
    params: Mapping[str, Any], *, sink_uri: str, conn_id: str | None, work_dir: str, scheduled: bool = False
) -> AuxJob:
    """The run's :class:`AuxJob` from the form / CLI options and CM tags; bad combinations fail here.

    A scheduled run has no rule of its own: its refresh settings are already laid over ``params``.

    Raises:
        ConfigError: an unknown tag or option, or a custom URL that names no archive.
    """
    config = resolve_aux_config(AUX_TABLE.selections_from_form(params))
    return AuxJob(config=config, sink_uri=sink_uri, conn_id=conn_id, work_dir=work_dir)


DECLARATION = Artifact(
    name=ARTIFACT,
    table=AUX_TABLE,
    job=AuxJob,
    resolve_job=resolve_job,
    version=VERSION,
    release_notes=RELEASE_NOTES,
)
"""The artifact's one declaration: its form, CLI subcommand and CM tag parser are made from it."""
