"""The DAG run's note: a markdown summary of what the run published, with its links, shown in the UI.

Each publishing task records a summary of its artifact (:func:`record_summary`, the XCom
``run_summary``: Asset name, location, links, files, bytes, the report's failed checks, the run's
time so far). The run's last task, :class:`RunNoteOperator` (a teardown: it runs whatever
happened and never changes the run's state), gathers them and writes the note.

Airflow 3 gives a task no way to set its run's note except the public REST API, so the note is
written through it, with the connection ``imagenet_ops_api`` (type ``http``: host = the
api-server's base URL, login and password of a user who may edit DAG runs, e.g.
``AIRFLOW_CONN_IMAGENET_OPS_API='http://ops-bot:secret@airflow-api:8080'``). Without that
connection the note is logged instead; a failure to write it is logged, never raised. Airflow
keeps at most 1000 characters of a note: a long one is cut, ending with a pointer to the task's log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from imagenet_ops.core.progress import human_bytes, human_seconds
from imagenet_ops.core.uris import is_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from imagenet_ops.core.manifest import PublishResult

log = logging.getLogger(__name__)

SUMMARY_XCOM = "run_summary"
API_CONN_ID = "imagenet_ops_api"
NOTE_LIMIT = 1000  # Airflow's dag_run_note.content column


def record_summary(
    context: Context, *, name: str, result: PublishResult, links: Mapping[str, str], run_seconds: float | None
) -> None:
    """Push what the run's note says of the artifact this task published (or found already published)."""
    ti = context.get("ti")
    if ti is None:  # an execute() called without a task instance: nobody reads a note
        return
    report = result.manifest.get("report") or {}
    ti.xcom_push(
        key=SUMMARY_XCOM,
        value={
            "name": name,
            "uri": result.uri,
            "links": dict(links),
            "cache_hit": result.cache_hit,
            "files": result.files,
            "bytes": result.bytes,
            "report": bool(report),
            "problems": list(report.get("problems", [])),
            "run_seconds": round(run_seconds, 1) if run_seconds else None,
        },
    )


def note_markdown(summaries: Sequence[Mapping[str, Any]], *, missing: int = 0) -> str:
    """The note: one paragraph per artifact (name, links, size, report status), at most :data:`NOTE_LIMIT` characters."""
    parts = []
    for s in summaries:
        links = " · ".join(
            f"[{label}]({s['links'][key]})"
            for key, label in (("folder", "folder"), ("manifest", "manifest.json"), ("report", "report"))
            if s["links"].get(key)
        )
        size = f"{s['files']} files, {human_bytes(s['bytes'])}"
        timing = ""
        if s.get("run_seconds") and not s["cache_hit"]:
            timing = f" in {human_seconds(s['run_seconds'])} ({human_bytes(s['bytes'] / s['run_seconds'])}/s)"
        state = "already published (cache hit)" if s["cache_hit"] else f"published {size}{timing}"
        if not s.get("report"):
            quality = "no data-quality report"
        elif s["problems"]:
            quality = f"❌ {len(s['problems'])} check(s) failed: " + "; ".join(s["problems"])
        else:
            quality = "✅ data-quality checks passed"
        parts.append(f"**{s['name']}**: {state}. {quality}.  \n{links}")
    if missing:
        parts.append(f"⚠️ {missing} publishing task(s) published nothing (see their logs).")
    if not parts:
        parts.append("Nothing was published.")
    text = "\n\n".join(parts)
    if len(text) > NOTE_LIMIT:
        tail = "\n\n… (cut; the Write run note task's log has the whole note)"
        text = text[: NOTE_LIMIT - len(tail)] + tail
    return text


def _api_session(conn_id: str) -> tuple[Any, str] | None:
    """A requests session logged in to the api-server of connection ``conn_id``, and its base URL; None without one."""
    import requests
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - not configured: the note is only logged
        return None
    scheme = conn.schema or ("https" if conn.port == 443 else "http")
    host = conn.host if is_url(conn.host or "") else f"{scheme}://{conn.host}"  # a host given as a URL keeps its scheme
    base = f"{host.rstrip('/')}{f':{conn.port}' if conn.port and f':{conn.port}' not in host else ''}"
    session = requests.Session()
    token = session.post(f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=15)
    token.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session, base


class RunNoteOperator(BaseOperator):
    """Write the run's note: a markdown summary of every artifact the run published, with its links.

    Meant as the run's teardown (``publish >> RunNoteOperator(...).as_teardown()``): it runs whatever
    happened and never changes the run's state. Without the connection ``imagenet_ops_api`` the note
    is logged, not written.

    :param publish_task_id: the task (maybe mapped) whose ``run_summary`` XComs the note lists.
    :param api_conn_id: the http connection of the api-server that stores the note.
    """

    template_fields: Sequence[str] = ("publish_task_id",)
    ui_color = "#fcf3cf"

    def __init__(self, *, publish_task_id: str, api_conn_id: str = API_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.publish_task_id = publish_task_id
        self.api_conn_id = api_conn_id

    def execute(self, context: Context) -> str:
        ti, run = context["ti"], context["dag_run"]
        pulled = ti.xcom_pull(task_ids=self.publish_task_id, key=SUMMARY_XCOM)  # every map index: a list when mapped
        values = pulled if isinstance(pulled, list) else [pulled]
        summaries = [v for v in values if isinstance(v, dict)]
        note = note_markdown(summaries, missing=max(0, len(values) - len(summaries)))
        self.log.info("Run note:\n%s", note)
        try:
            session = _api_session(self.api_conn_id)
            if session is None:
                self.log.info("Run note not written: no connection %s (see %s)", self.api_conn_id, __name__)
                return note
            api, base = session
            resp = api.patch(
                f"{base}/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}",
                params={"update_mask": "note"},
                json={"note": note},
                timeout=15,
            )
            resp.raise_for_status()
            self.log.info("Run note written to %s", base)
        except Exception as exc:  # noqa: BLE001 - the note is a convenience: the run's outcome stands
            from imagenet_ops.core.redact import redact_text

            self.log.warning("Run note not written: %s", redact_text(str(exc)))
        return note
