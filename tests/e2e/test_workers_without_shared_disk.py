"""Every DAG on two Celery workers that share no disk, and a training run that survives losing one.

The production topology (Postgres metadata DB, CeleryExecutor on Redis, api-server, scheduler
and dag-processor as separate processes) with TWO Celery workers, each the way a host or a pod
is: its own mount namespace, where a private folder is mounted at the one
``IMAGENET_OPS_WORK_DIR`` path, and its own host name (UTS namespace), which the task instances
record. Runs are triggered over the REST API with only the inputs and an S3 sink (an
S3-protocol server on 127.0.0.1, through an Airflow connection).

In the runs at the defaults the workers take turns (:class:`TakeTurns`): each task goes to the
other worker than the task before it, and a worker is wiped whenever it is idle, as a replaced
pod would be: the worst case for a file handed over on local disk, made deterministic. Inputs
are on S3 or HTTP, never on a local path. A task that passes only on a retry that happened to
land on the right host fails the test: on a healthy cluster every task succeeds at its first try.

Needs root (``unshare --mount``, bind mounts), as CI has.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

HOSTS = ("host-a", "host-b")
QUEUE = "default"  # [operators] default_queue: every task of the DAGs
REDIS_DB = 12
# A lost task is failed after this much silence, then retried after the DAGs' retry delay.
HEARTBEAT_TIMEOUT = 30
# Per DAG: the task whose XCom is the CM env dict, and the env key that names the published output.
DEFAULTS_RUNS = {
    "imagenet_training_data": ("finalize", "CM_MLPERF_TRAINING_RESNET_TFRECORDS_PATH"),
    "imagenet_aux": ("publish", "CM_DATASET_AUX_PATH"),
    "resnet50_model": ("publish", "CM_ML_MODEL_FILE_WITH_PATH"),
    "imagenet_preprocessed": ("finalize", "CM_DATASET_PREPROCESSED_PATH"),
}


# --------------------------------------------------------------------------------------------
# Two hosts


@pytest.fixture(scope="module")
def hosts(make_cluster, port_factory):
    """The cluster, with one Celery worker per host of :data:`HOSTS`, each with a private work dir."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("two hosts on one machine need root and unshare (mount and UTS namespaces)")
    cluster = make_cluster(
        redis_db=REDIS_DB,
        extra_env={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        },
    )
    work_dir = Path(cluster.env["IMAGENET_OPS_WORK_DIR"])
    work_dir.mkdir()  # only the mount point: nothing outside the hosts writes there
    for name in HOSTS:
        _start_host_worker(cluster, name, port_factory())
    cluster.login()
    celery = Consumers(cluster.env["AIRFLOW__CELERY__BROKER_URL"])
    cluster.wait(lambda: celery.ping() == set(HOSTS), 90, "both Celery workers to answer")
    for name in HOSTS:  # each host sees its own folder at the work dir path
        seen, disk = os.stat(f"/proc/{cluster.procs[name].pid}/root{work_dir}"), os.stat(cluster.home / f"{name}-disk")
        assert (seen.st_dev, seen.st_ino) == (disk.st_dev, disk.st_ino), name
    for dag_id in DEFAULTS_RUNS:
        cluster.wait_for_dag(dag_id)
    yield cluster
    assert not list(work_dir.iterdir()), "something outside the hosts wrote to the work dir"


def _start_host_worker(cluster, name: str, log_port: int) -> None:
    """``airflow celery worker`` in a mount + UTS namespace of its own: ``<home>/<name>-disk`` at the work dir."""
    disk = cluster.home / f"{name}-disk"
    disk.mkdir()
    host = 'mount --bind "$1" "$2" && hostname "$3" && shift 3 && exec "$@"'
    worker = [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname", name, "--concurrency", "2"]
    worker += ["--pid", str(cluster.home / f"{name}.pid")]
    env = {
        **cluster.env,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
        "AIRFLOW__CELERY__WORKER_LOG_SERVER_PORT": str(log_port),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",  # the UTS namespace's name, no DNS lookup
    }
    unshare = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", host, name]
    cluster.start(name, [*unshare, str(disk), cluster.env["IMAGENET_OPS_WORK_DIR"], name, *worker], env=env)


@pytest.fixture(scope="module")
def consumers(hosts) -> Consumers:
    return Consumers(hosts.env["AIRFLOW__CELERY__BROKER_URL"])


class Consumers:
    """Which Celery workers take tasks from :data:`QUEUE` (Celery's remote control, over the broker).

    A worker's consumer is added again no sooner than :attr:`GAP` seconds after it was cancelled:
    kombu's Redis transport defers a cancel until its current poll (1 s) ends, and an add that
    comes in between is undone by it (the worker then consumes nothing, celery/celery#1773).
    """

    GAP = 2.0

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery(broker=broker_url)
        self._consuming = set(HOSTS)
        self._cancelled_at: dict[str, float] = {}

    def ping(self) -> set[str]:
        return {node.partition("@")[2] for reply in self.app.control.ping(timeout=1.0) for node in reply}

    def only(self, host: str) -> None:
        """``host`` alone takes new tasks (the others first stop taking any); what the others run goes on."""
        for other in sorted(self._consuming - {host}):
            self._call("cancel_consumer", other)
            self._consuming.discard(other)
            self._cancelled_at[other] = time.monotonic()
        self._add(host)

    def all(self) -> None:
        for host in HOSTS:
            self._add(host)

    def idle(self, host: str) -> bool:
        """``host`` runs no task and holds none (asked after its consumer was cancelled: none can come)."""
        inspect = self.app.control.inspect(destination=[f"celery@{host}"], timeout=5.0)
        active, reserved = inspect.active(), inspect.reserved()
        assert active is not None and reserved is not None, f"{host} does not answer"
        return not any(active.values()) and not any(reserved.values())

    def _add(self, host: str) -> None:
        if host in self._consuming:
            return
        time.sleep(max(self._cancelled_at.get(host, 0.0) + self.GAP - time.monotonic(), 0.0))
        self._call("add_consumer", host)
        self._consuming.add(host)

    def _call(self, command: str, host: str) -> None:
        replies = getattr(self.app.control, command)(QUEUE, destination=[f"celery@{host}"], reply=True, timeout=5.0)
        assert replies, f"{command} {QUEUE} on {host}: no reply"


class TakeTurns:
    """While in the ``with`` block, one host takes tasks at a time, and hands over as soon as it starts one.

    Every task attempt of the run then runs on the other host than the attempt before it. A host
    whose turn is over is wiped (its private work dir emptied) once it runs nothing, as a pod
    replaced between two tasks would be: a file left there for a later task is gone, whichever
    host that task lands on.
    """

    def __init__(self, cluster, consumers: Consumers, run_url: str) -> None:
        self.cluster, self.consumers, self.run_url = cluster, consumers, run_url
        self.turn = HOSTS[0]
        self.wiped: list[str] = []
        self.error: BaseException | None = None
        self._to_wipe: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TakeTurns:
        self.consumers.only(self.turn)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.consumers.all()

    def _loop(self) -> None:
        seen: set[tuple] = set()
        try:
            while not self._stop.wait(0.3):
                started = {}  # attempts seen on a host for the first time: host by attempt
                for ti in self.cluster.task_instances(self.run_url):
                    attempt = (ti["task_id"], ti["map_index"], ti["try_number"])
                    if ti["hostname"] and attempt not in seen:
                        started[attempt] = ti["hostname"]
                seen.update(started)
                if self.turn in started.values():  # one hand-over per look, however many started
                    self._to_wipe, self.turn = self.turn, HOSTS[1 - HOSTS.index(self.turn)]
                    self.consumers.only(self.turn)
                if self._to_wipe and self._to_wipe != self.turn and self.consumers.idle(self._to_wipe):
                    for path in (self.cluster.home / f"{self._to_wipe}-disk").iterdir():
                        shutil.rmtree(path)
                    self.wiped.append(self._to_wipe)
                    self._to_wipe = None
        except Exception as exc:  # noqa: BLE001 - the test reports it
            self.error = exc


def _host_pids(mount_ns: str) -> list[int]:
    """The live processes in mount namespace ``mount_ns`` (``os.readlink('/proc/<pid>/ns/mnt')``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                same = os.readlink(f"/proc/{entry}/ns/mnt") == mount_ns
                zombie = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
            except OSError:
                continue
            if same and not zombie:
                pids.append(int(entry))
    return pids


def _lose_host(cluster, host: str) -> dict[str, Any]:
    """SIGKILL all of ``host``: its worker's process group, then every process left in its mount namespace.

    What is left after the group are the task processes (in process groups of their own) and
    their children. Returns what was killed.
    """
    worker = cluster.lost(host)
    mount_ns = os.readlink(f"/proc/{worker.pid}/ns/mnt")
    groups = {}
    for pid in _host_pids(mount_ns):
        try:
            groups[pid] = os.getpgid(pid)
        except ProcessLookupError:
            continue
    os.killpg(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while left := _host_pids(mount_ns):
        assert time.monotonic() < deadline, f"processes of {host} survive SIGKILL: {left}"
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    worker.wait(timeout=10)
    return {"processes": len(groups), "own_groups": sorted({g for g in groups.values() if g != worker.pid})}


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    """A finished (or stopped) run: its state, task instances and published objects (key in the sink: bytes)."""

    dag_id: str
    url: str
    state: str
    tis: list[dict[str, Any]]
    objects: dict[str, bytes]
    bucket: str
    seconds: float
    wiped: list[str]

    def why(self, cluster, **more: Any) -> str:
        """What a failed assertion shows: each task instance's state, try and host, and the task errors."""
        states = {f"{t['task_id']}[{t['map_index']}]": f"{t['state']} try {t['try_number']} on {t['hostname']}" for t in self.tis}
        why = {"run": self.state, "task instances": states, "hosts wiped": self.wiped, **more}
        return json.dumps({**why, "errors": cluster.task_errors(self.dag_id)}, indent=1, default=str)


def _bucket(s3_endpoint: str, name: str):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return client


def _objects(client, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object of ``bucket``, by key under ``prefix/`` (there must be no other)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    outside = [k for k in keys if not k.startswith(f"{prefix}/")]
    assert not outside, f"objects outside the sink {prefix}/: {outside[:10]}"
    return {k[len(prefix) + 1 :]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _wait_first_tries(cluster, run_url: str, timeout: float, turns: TakeTurns) -> str:
    """The run's state; at the first failed attempt, ``"stopped"``: the run is then marked failed (over the API)."""

    def done() -> str | None:
        if turns.error is not None:
            raise AssertionError(f"taking turns failed: {turns.error!r}")
        state = cluster.run_state(run_url)
        if state in ("success", "failed"):
            return state
        if any(t["state"] in ("up_for_retry", "failed") for t in cluster.task_instances(run_url)):
            return "stopped"
        return None

    state = cluster.wait(done, timeout, "the run to finish", interval=0.5)
    if state == "stopped":
        assert cluster.api.patch(run_url, json={"state": "failed"}, timeout=10).ok
        active = ("running", "queued", "scheduled", "up_for_retry", "restarting")
        cluster.wait(lambda: not any(t["state"] in active for t in cluster.task_instances(run_url)), 60, "the run to stop")
    return state


def _trigger(cluster, s3_endpoint: str, dag_id: str, inputs: dict[str, str], bucket: str):
    client = _bucket(s3_endpoint, bucket)
    return client, cluster.trigger(dag_id, {**inputs, "sink_uri": f"s3://{bucket}/{dag_id}", "conn_id": "e2e_s3"})


def _run_taking_turns(cluster, consumers, s3_endpoint: str, dag_id: str, inputs: dict[str, str], bucket: str) -> Run:
    """A run of ``dag_id`` at its defaults with ``inputs``, the hosts taking turns; stopped at its first failed attempt."""
    started = time.monotonic()
    client, run_url = _trigger(cluster, s3_endpoint, dag_id, inputs, bucket)
    with TakeTurns(cluster, consumers, run_url) as turns:
        state = _wait_first_tries(cluster, run_url, 240, turns)
    seconds = time.monotonic() - started
    tis, objects = cluster.task_instances(run_url), _objects(client, bucket, dag_id)
    return Run(dag_id, run_url, state, tis, objects, bucket, seconds, turns.wiped)


def _assert_ran_on_both_hosts_at_first_try(cluster, run: Run) -> None:
    why = run.why(cluster)
    assert run.state == "success", why
    assert all(t["try_number"] == 1 for t in run.tis if t["state"] == "success"), why
    assert {t["hostname"] for t in run.tis if t["hostname"]} == set(HOSTS), why
    assert run.wiped, why  # a host emptied between its tasks at least once
    publish_task, env_key = DEFAULTS_RUNS[run.dag_id]
    env = cluster.xcom(run.url, publish_task, map_index=0 if run.dag_id == "resnet50_model" else None)
    assert env[env_key].startswith(f"s3://{run.bucket}/{run.dag_id}"), env
    assert "manifest.json" in run.objects or any(k.endswith("/manifest.json") for k in run.objects), sorted(run.objects)
    assert not [k for k in run.objects if ".tmp-" in k or k.startswith(".imagenet_ops/staging/")], sorted(run.objects)


@pytest.fixture(scope="module")
def inputs(dag_inputs, s3_endpoint, tmp_path_factory) -> dict[str, dict[str, str]]:
    """Each DAG's inputs, none on a local disk: downloads over HTTP, files and folders in an S3 bucket.

    Hosts that share no disk share no input folder either. The training tars (1,600 images) keep
    each of the 4 writer tasks (the default) busy for seconds.
    """
    client = _bucket(s3_endpoint, "b-two-hosts-inputs")

    def upload(path: Path, key: str) -> str:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                name = f"{key}/{file.relative_to(path)}" if path.is_dir() else key
                client.upload_file(str(file), "b-two-hosts-inputs", name)
        return f"s3://b-two-hosts-inputs/{key}"

    aux = upload(Path(dag_inputs.inputs["imagenet_training_data"]["aux_path"]), "aux")
    train, validation = _training_tars(dag_inputs, tmp_path_factory.mktemp("training-inputs"))
    images = Path(dag_inputs.inputs["imagenet_preprocessed"]["images"])
    return {
        "imagenet_aux": dag_inputs.inputs["imagenet_aux"],
        "resnet50_model": dag_inputs.inputs["resnet50_model"],
        "imagenet_training_data": {
            "train": upload(train, f"training/{train.name}"),
            "validation": upload(validation, f"training/{validation.name}"),
            "aux_path": aux,
        },
        "imagenet_preprocessed": {"images": upload(images, f"preprocessed/{images.name}"), "aux_path": aux},
    }


def _training_tars(dag_inputs, root: Path) -> tuple[Path, Path]:
    """An ``ILSVRC2012_img_train.tar`` of 8 classes x 180 images and an ``ILSVRC2012_img_val.tar`` of 160 of theirs."""
    from imagenet_ops.aux.pipeline import NUM_CLASSES
    from imagenet_ops.testing.samples import imagenet_like_jpeg, sample_wnids, training_subset, write_tar

    val_txt = (Path(dag_inputs.inputs["imagenet_training_data"]["aux_path"]) / "val.txt").read_text()
    classes, val_images = training_subset(val_txt, sample_wnids(NUM_CLASSES), classes=8, images=160)
    pool = [imagenet_like_jpeg(seed, width=200, height=150) for seed in range(32)]  # decoding is the work, not variety
    class_tars = {
        wnid: write_tar(root / f"{wnid}.tar", {f"{wnid}_{k}.JPEG": pool[(c + k) % len(pool)] for k in range(1, 181)})
        for c, wnid in enumerate(classes)
    }
    train = write_tar(root / "ILSVRC2012_img_train.tar", {p.name: p.read_bytes() for p in class_tars.values()}, gz=False)
    val_members = {f"ILSVRC2012_val_{i:08d}.JPEG": pool[i % len(pool)] for i in val_images}
    return train, write_tar(root / "ILSVRC2012_img_val.tar", val_members, gz=False)


@pytest.fixture(scope="module")
def training_run(hosts, consumers, inputs, s3_endpoint) -> Run:
    """``imagenet_training_data`` at its defaults, the hosts taking turns: also the undisturbed reference."""
    dag_id = "imagenet_training_data"
    return _run_taking_turns(hosts, consumers, s3_endpoint, dag_id, inputs[dag_id], "b-two-hosts-training")


# --------------------------------------------------------------------------------------------
# Tests


def test_training_data_runs_on_two_hosts_without_a_shared_disk(hosts, training_run):
    _assert_ran_on_both_hosts_at_first_try(hosts, training_run)
    writers = {t["hostname"] for t in training_run.tis if t["task_id"] == "write_shards"}
    assert writers == set(HOSTS), training_run.why(hosts)


# Regression (issue 12 item 1): these three handed files over on the work dir and failed on a second host.
@pytest.mark.parametrize("dag_id", ["imagenet_aux", "resnet50_model", "imagenet_preprocessed"])
def test_dag_runs_on_two_hosts_without_a_shared_disk(hosts, consumers, inputs, s3_endpoint, dag_id):
    bucket = f"b-two-hosts-{dag_id.replace('_', '-')}"
    run = _run_taking_turns(hosts, consumers, s3_endpoint, dag_id, inputs[dag_id], bucket)
    _assert_ran_on_both_hosts_at_first_try(hosts, run)


def test_losing_a_host_mid_shard_costs_time_not_bytes(hosts, inputs, training_run, s3_endpoint):
    """Kill one host (its worker and its task processes) while it writes shards: the other finishes the run."""
    assert training_run.state == "success", training_run.why(hosts)
    dag_id = "imagenet_training_data"
    bucket = "b-two-hosts-host-loss"
    client, run_url = _trigger(hosts, s3_endpoint, dag_id, inputs[dag_id], bucket)

    def writing() -> list[dict[str, Any]]:
        return [t for t in hosts.task_instances(run_url) if t["task_id"] == "write_shards" and t["state"] == "running"]

    victim = hosts.wait(writing, 120, "a shard writer to start", interval=0.2)[0]["hostname"]
    survivor = HOSTS[1 - HOSTS.index(victim)]
    done_keys = _done_keys_by_group(hosts, client, bucket, dag_id, run_url)

    def victim_mid_group() -> list[tuple[int, int]]:
        """The victim's running writers, once one of them has completed a unit of its group (not all)."""
        done = _keys(client, bucket, f"{dag_id}/.imagenet_ops/done/")
        running = [t for t in writing() if t["hostname"] == victim]
        if any(0 < len(done_keys[t["map_index"]] & done) < len(done_keys[t["map_index"]]) for t in running):
            return [(t["map_index"], t["try_number"]) for t in running]
        return []

    lost = hosts.wait(victim_mid_group, 90, f"a writer on {victim} to complete a unit of its group", interval=0.2)
    killed_at = time.monotonic()
    killed = _lose_host(hosts, victim)
    assert killed["own_groups"], f"no task process was running on {victim}: {killed}"

    state = hosts.wait_for_run(run_url, 240)
    recovered = time.monotonic() - killed_at
    run = Run(dag_id, run_url, state, hosts.task_instances(run_url), _objects(client, bucket, dag_id), bucket, recovered, [])
    why = run.why(hosts, lost=lost, killed=killed, seconds_after_the_kill=round(recovered))
    assert run.state == "success", why
    by_index = {t["map_index"]: t for t in run.tis if t["task_id"] == "write_shards"}
    for map_index, try_number in lost:  # retried, and finished on the other host
        assert by_index[map_index]["try_number"] > try_number and by_index[map_index]["hostname"] == survivor, why
    # The retries skipped what the lost attempts had completed: the host was lost mid-group.
    retried = [hosts.xcom(run_url, "write_shards", map_index=i) for i, _ in lost]
    assert any(r["written"] < r["units"] for r in retried), (why, retried)

    assert not [k for k in run.objects if ".tmp-" in k], sorted(run.objects)
    assert sorted(run.objects) == sorted(training_run.objects)

    def comparable(of: Run, key: str) -> Any:
        return _comparable(key, of.objects[key], scratch=_scratch(hosts, of))

    differ = [k for k in run.objects if comparable(run, k) != comparable(training_run, k)]
    assert not differ, {k: _difference(training_run.objects[k], run.objects[k]) for k in differ}


def _done_keys_by_group(cluster, client, bucket: str, dag_id: str, run_url: str) -> dict[int, set[str]]:
    """``map_index -> the done-record keys of its group``, from the run's plan in the sink and its groups' XCom."""
    from imagenet_ops.training.plan import PLAN_KEY, TrainingPlan

    units = TrainingPlan.from_bytes(client.get_object(Bucket=bucket, Key=f"{dag_id}/{PLAN_KEY}")["Body"].read()).units
    groups = cluster.xcom(run_url, "groups")
    return {i: {f"{dag_id}/{units[u].done_key}" for u in group} for i, group in enumerate(groups)}


def _keys(client, bucket: str, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _scratch(cluster, run: Run) -> bytes:
    """The run's work dir (``dag_helpers.work_dir``), run id included: no published byte may name it.

    Regression (issue 12 item 2): ``provenance.labels_source`` recorded where the labels were
    copied to, not the user's aux folder, so two runs differed there whatever happened to their hosts.
    """
    run_id = run.url.rsplit("/", 1)[1]
    return f"{cluster.env['IMAGENET_OPS_WORK_DIR']}/{run.dag_id}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}".encode()


def _comparable(key: str, data: bytes, *, scratch: bytes) -> bytes:
    """An object's bytes (the plan's gunzipped), which must not name the run's scratch. The manifest has no timestamps."""
    if key.endswith(".gz"):
        data = gzip.decompress(data)
    assert scratch not in data, f"{key} names the run's scratch {scratch.decode()}"
    return data


def _difference(before: bytes, after: bytes) -> str:
    """The first lines that differ, of the (gunzipped) text of two objects."""
    import difflib

    texts = [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in (before, after)]
    lines = [t.decode(errors="replace").replace(",", ",\n").splitlines() for t in texts]
    return "\n".join(list(difflib.unified_diff(*lines, "undisturbed", "host lost", n=1, lineterm=""))[:30])
