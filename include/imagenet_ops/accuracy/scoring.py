"""From model outputs to labels, and from labels to top-1 / top-5, the confusion summary and the verdict.

The class offset is the model's: MLPerf's 1001-class TF / ONNX / TFLite / ncnn ResNet-50 has
background as class 0, so label = argmax - 1 (what the MLPerf reference does); the 1000-class
PyTorch models need none; an argmax output is read as the index it is, with the same offset.
A background answer (id 0 of a 1001-class model) is label -1: always wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagenet_ops.accuracy.variations import FULL_SET_IMAGES, MLPERF_REFERENCE_TOP1, MLPERF_TARGET_FRACTION, TOP_K

Row = tuple[str, int, int, list[int] | None]
"""One scored image: name, true label, predicted label, top-5 labels (``None`` without scores)."""


def to_labels(top1: np.ndarray, scores: np.ndarray | None, *, offset: int) -> tuple[np.ndarray, np.ndarray | None]:
    """0-based labels of the top-1 and (from scores) the top-5 answers, the model's class offset removed."""
    top = None
    if scores is not None and scores.shape[1] >= TOP_K:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K] - offset
    return np.asarray(top1, dtype=np.int64) - offset, top


@dataclass(frozen=True)
class Summary:
    """The counts of a check: what ``accuracy.json`` holds besides the two inputs."""

    images: int
    top1_correct: int
    top5_correct: int | None
    per_class: dict[int, tuple[int, int]]
    """label -> (images, top-1 correct)."""
    confusions: list[tuple[int, int, int]]
    """The most frequent (true label, predicted label, images) mistakes, most frequent first."""

    @property
    def top1(self) -> float:
        return 100.0 * self.top1_correct / self.images if self.images else 0.0

    @property
    def top5(self) -> float | None:
        return None if self.top5_correct is None or not self.images else 100.0 * self.top5_correct / self.images

    def with_unscored(self, images: int) -> Summary:
        """The same counts over ``images`` more images that could not be scored (counted wrong, in no class)."""
        return Summary(self.images + images, self.top1_correct, self.top5_correct, self.per_class, self.confusions)

    def worst_classes(self, count: int = 10) -> list[tuple[int, int, int]]:
        """``(label, images, correct)`` of the classes with the lowest top-1, ties by more images, then label."""
        ranked = sorted(self.per_class.items(), key=lambda kv: (kv[1][1] / kv[1][0], -kv[1][0], kv[0]))
        return [(label, n, ok) for label, (n, ok) in ranked[:count]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "top1_correct": self.top1_correct,
            "top1_percent": round(self.top1, 4),
            "top5_correct": self.top5_correct,
            "top5_percent": None if self.top5 is None else round(self.top5, 4),
            "classes_seen": len(self.per_class),
            "classes_all_correct": sum(1 for n, ok in self.per_class.values() if n == ok),
            "worst_classes": [{"label": lab, "images": n, "top1_correct": ok} for lab, n, ok in self.worst_classes()],
            "confusions": [{"label": t, "predicted": p, "images": n} for t, p, n in self.confusions],
            "per_class": {str(lab): [n, ok] for lab, (n, ok) in sorted(self.per_class.items())},
        }


def summarize(rows: Iterable[Row], *, confusions: int = 20) -> Summary:
    """Count top-1 / top-5 hits per class and the most frequent mistakes."""
    per_class: dict[int, list[int]] = {}
    mistakes: Counter[tuple[int, int]] = Counter()
    images = top1 = top5 = 0
    have_top5 = True
    for _, label, predicted, top in rows:
        images += 1
        counts = per_class.setdefault(label, [0, 0])
        counts[0] += 1
        if predicted == label:
            top1 += 1
            counts[1] += 1
        else:
            mistakes[(label, predicted)] += 1
        if top is None:
            have_top5 = False
        elif label in top:
            top5 += 1
    frequent = sorted(mistakes.items(), key=lambda kv: (-kv[1], kv[0]))[:confusions]
    return Summary(
        images=images,
        top1_correct=top1,
        top5_correct=top5 if have_top5 and images else None,
        per_class={k: (v[0], v[1]) for k, v in per_class.items()},
        confusions=[(t, p, n) for (t, p), n in frequent],
    )


@dataclass(frozen=True)
class Verdict:
    """Pass, fail, or no verdict (a subset with no expectation), with the figure it was held to."""

    passed: bool | None
    expected_top1: float | None
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "expected_top1": self.expected_top1, "rule": self.rule, "message": self.message}


def judge(
    summary: Summary, *, full_set: bool, expected_top1: float | None, model_accuracy: float | None, model: str, data: str
) -> Verdict:
    """Hold the measured top-1 to MLPerf's target on the full set, else to the given expectation.

    On the full set the bar is 99 % of the reference (75.6954 %, the submission checker's); the
    variant's own ``CM_ML_MODEL_ACCURACY``, when it has one, is reported beside it.
    """
    measured = f"measured top-1 {summary.top1:.4f}% ({summary.top1_correct}/{summary.images})"
    if full_set:
        target = round(MLPERF_REFERENCE_TOP1 * MLPERF_TARGET_FRACTION, 4)
        stated = f"; the variant states {model_accuracy}%" if model_accuracy is not None else ""
        rule = f"MLPerf: 99% of {MLPERF_REFERENCE_TOP1}% on all {FULL_SET_IMAGES:,} images"
        passed = summary.top1 >= target
        word = "passes" if passed else "FAILS"
        return Verdict(passed, target, rule, f"{model} on {data} {word} {rule}: {measured} vs {target}%{stated}")
    if expected_top1 is None:
        rule = f"none: {summary.images:,} of {FULL_SET_IMAGES:,} images and no expected top-1 given"
        return Verdict(None, None, rule, f"{model} on {data}: {measured}; no verdict ({rule})")
    passed = summary.top1 >= expected_top1
    word = "passes" if passed else "FAILS"
    rule = f"the given expectation on {summary.images:,} images"
    return Verdict(passed, expected_top1, rule, f"{model} on {data} {word} {rule}: {measured} vs expected {expected_top1}%")


def rows_from_batch(names: Sequence[str], labels: Sequence[int], predicted: np.ndarray, top5: np.ndarray | None) -> list[Row]:
    """Scored rows of one batch (plain ints and lists, for JSON)."""
    return [
        (name, int(label), int(predicted[i]), None if top5 is None else [int(v) for v in top5[i]])
        for i, (name, label) in enumerate(zip(names, labels, strict=True))
    ]
