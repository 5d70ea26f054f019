"""Every task's ``doc_md``: what it does, what it takes, and what a failure of it usually means.

The UI shows it on the task's page ("Task docs"), where an ops engineer lands from a failure
notification. What a task does comes from its operator's docstring (or its function's, for a
``@task``); what a failure means is in :data:`WHEN_IT_FAILS`, one line per operator or task id.
"""

from __future__ import annotations

import inspect
from typing import Any

RETRIED = "Network and storage errors are retried with backoff; bad input fails at once."
WHEN_IT_FAILS: dict[str, str] = {
    # operators, by class name
    "ArchiveDownloadOperator": "Every mirror failed (the log lists each URL and why), or the disk is full. " + RETRIED,
    "ChecksumVerifyOperator": "The bytes are not the published ones (ChecksumMismatch names the file and both md5s): "
    "a wrong mirror, a truncated download or a wrong md5 in the form. Not retried.",
    "ArchiveExtractOperator": "The archive is damaged or unsafe (a path outside the folder, a link, a bomb): the error "
    "names the member. Not retried.",
    "AuxValidateOperator": "An aux file is missing or malformed (the error names the file and line). Not retried.",
    "AuxPublishOperator": "The sink cannot be written (permissions, no such bucket, the connection), or another run "
    "holds the output's lease (the error names it). " + RETRIED,
    "ModelDownloadOperator": "Every URL of the variant failed, or its md5 did not match. " + RETRIED,
    "ModelPrepareOperator": "The conversion failed (fix-input-shape, an unpacked .gz): the log names the model file.",
    "ModelLoadCheckOperator": "The model does not load in its framework, or its inputs/outputs are not ResNet-50's "
    "(the error shows the interface found). The variant is not published.",
    "ModelPublishOperator": "The sink cannot be written, or another run holds the variant's lease. " + RETRIED,
    "TrainingChecksumOperator": "A tar's md5 does not match the one given (the error names the tar). Not retried.",
    "TrainingPlanOperator": "An input tar cannot be listed, a validation image has no label, or the labels do not "
    "match the train classes (the error names the file and line). Not retried.",
    "TrainingShardsOperator": "An image does not decode (the error names its tar and member), the sink cannot be "
    "written, or a newer try of this group took it over (LeaseLostError: this try stops, the new one goes on). "
    "A retry skips the shards already complete.",
    "TrainingFinalizeOperator": "A shard is missing or damaged (the error lists them): re-run, and only those are "
    "rewritten. A cache hit publishes nothing new.",
    "PreprocessInputsOperator": "An input (image folder or tar, aux labels) cannot be fetched. " + RETRIED,
    "PreprocessSelectOperator": "Fewer images than the subset asks for, or the labels do not cover them. Not retried.",
    "PreprocessChunkOperator": "Too many images of the chunk are bad (the list names them), or the sink cannot be "
    "written. A retry rewrites the chunk's own files.",
    "PreprocessFinalizeOperator": "A chunk's files are missing (re-run), or the sink cannot be written.",
    "PreprocessCleanupOperator": "The staged inputs could not be removed: they are removed by the next run.",
    "AccuracyPlanOperator": "The model and the set cannot fit (layout, data type, resolution: the error names both "
    "sides), the set has no val_map.txt, or a folder holds no such artifact. Not retried.",
    "AccuracyScoreOperator": "The runtime cannot load the model, or a tensor of the set is damaged (the error names "
    "the file). Not retried; a storage error is. " + RETRIED,
    "AccuracyPublishOperator": "The pair did not reach its target (AccuracyGateError: the model, the set, measured vs "
    "expected; the result and its report are published all the same), a chunk's rows are missing, or the sink cannot "
    "be written.",
    "AccuracyCleanupOperator": "The staged rows could not be removed: nothing else is affected.",
    "ReleaseOutputLeaseOperator": "The lease could not be released: it expires by itself (15 min by default).",
    "RunNoteOperator": "It does not fail: a note it could not write (no connection imagenet_ops_api, the api-server "
    "unreachable, a user without the right to edit runs) is logged, with the note's text, and the run's state stands.",
    # @task functions, by task id
    "resolve": "A bad variation or tag combination, or a missing input: the error says which field. Not retried.",
    "groups": "The plan's XCom is missing: see the plan task.",
    "chunk_ids": "The selection's XCom is missing: see the select task.",
    "cleanup": "Scratch or staging could not be removed: nothing else is affected.",
}


def task_doc(task: Any) -> str:
    """The ``doc_md`` of ``task``: its own doc (or its operator's docstring), its inputs, and what its failure means."""
    cls = getattr(task, "operator_class", None) or type(task)  # a mapped task names its operator class
    own = getattr(task, "doc_md", None)
    what = own or _first_paragraph(inspect.getdoc(cls) or "")
    fields = [f for f in getattr(cls, "template_fields", ()) if not f.startswith("_")]
    hint = WHEN_IT_FAILS.get(getattr(cls, "__name__", "")) or WHEN_IT_FAILS.get(task.task_id, "")
    parts = [what.strip()]
    if fields and not own:
        parts.append("**Inputs:** " + ", ".join(f"`{f}`" for f in fields))
    if hint:
        parts.append(f"**When it fails:** {hint}")
    return "\n\n".join(p for p in parts if p)


def document_tasks(dag: Any) -> None:
    """Give every task of ``dag`` its :func:`task_doc` (call at the end of a DAG file)."""
    for task in dag.tasks:
        doc = task_doc(task)
        if hasattr(task, "partial_kwargs"):  # a mapped task keeps its doc_md there
            task.partial_kwargs["doc_md"] = doc
        else:
            task.doc_md = doc


def _first_paragraph(text: str) -> str:
    return text.split("\n\n", 1)[0].replace("\n", " ")
