"""The run note's text, and what the note task does when the api-server cannot take it (the real write: tests/ui)."""

from __future__ import annotations

from types import SimpleNamespace

from imagenet_operators.run_note import NOTE_LIMIT, RunNoteOperator, note_markdown

LINKS = {"folder": "file:///a/aux", "manifest": "file:///a/aux/manifest.json", "report": "file:///a/aux/report/report.md"}


def _summary(**over):
    base = {
        "name": "imagenet_aux@file:3f0c2a91",
        "uri": "/a/aux",
        "links": LINKS,
        "cache_hit": False,
        "files": 11,
        "bytes": 2_000_000,
        "report": True,
        "problems": [],
        "run_seconds": 10.0,
    }
    return {**base, **over}


def test_a_published_artifact_is_named_with_its_links_size_throughput_and_verdict():
    note = note_markdown([_summary()])
    assert note.startswith("**imagenet_aux@file:3f0c2a91**: published 11 files, 2.0 MB in 10.0s (200.0 KB/s).")
    assert "✅ data-quality checks passed" in note
    assert (
        "[folder](file:///a/aux) · [manifest.json](file:///a/aux/manifest.json) · [report](file:///a/aux/report/report.md)"
        in note
    )


def test_failed_checks_a_cache_hit_and_no_report_are_said_so():
    note = note_markdown(
        [
            _summary(problems=["every class has 50 validation images (2 do not)"]),
            _summary(name="b", cache_hit=True),
            _summary(name="c", report=False, links={k: v for k, v in LINKS.items() if k != "report"}),
        ],
        missing=1,
    )
    assert "❌ 1 check(s) failed: every class has 50 validation images (2 do not)" in note
    assert "**b**: already published (cache hit)" in note
    assert "**c**: published" in note and "no data-quality report" in note and note.count("[report]") == 2
    assert "1 publishing task(s) published nothing" in note
    assert note_markdown([]) == "Nothing was published."


def test_a_long_note_is_cut_to_what_airflow_keeps():
    note = note_markdown([_summary(name=f"resnet50_model/variant-{i}@file:0000000{i}") for i in range(10)])
    assert len(note) == NOTE_LIMIT and note.endswith("the Write run note task's log has the whole note)")


class _TI:
    def xcom_pull(self, *, task_ids, key):
        assert (task_ids, key) == ("publish", "run_summary")
        return _summary()


def test_an_unreachable_api_server_is_logged_without_its_password_and_the_task_succeeds(monkeypatch, capfd, closed_port_url):
    # Regression guard: the note is a convenience; a down api-server must not fail the run, nor leak its login.
    monkeypatch.setenv("AIRFLOW_CONN_IMAGENET_OPS_API", closed_port_url.replace("http://", "http://ops-bot:s3cret-pw@"))
    op = RunNoteOperator(task_id="run_note", publish_task_id="publish")
    context = {"ti": _TI(), "dag_run": SimpleNamespace(dag_id="imagenet_aux", run_id="manual__1")}
    note = op.execute(context)
    logged = "".join(capfd.readouterr())  # the operator's log (structlog) goes to the console here
    assert note.startswith("**imagenet_aux@file:3f0c2a91**")
    assert "Run note not written:" in logged and "s3cret-pw" not in logged


def test_without_the_connection_the_note_is_logged_only(monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_IMAGENET_OPS_API", raising=False)
    op = RunNoteOperator(task_id="run_note", publish_task_id="publish")
    context = {"ti": _TI(), "dag_run": SimpleNamespace(dag_id="imagenet_aux", run_id="manual__1")}
    op.execute(context)
    logged = "".join(capfd.readouterr())
    assert "Run note not written: no connection imagenet_ops_api" in logged
    assert "**imagenet_aux@file:3f0c2a91**: published" in logged
