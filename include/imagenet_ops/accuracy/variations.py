"""The accuracy check's options as data, and the MLPerf figures it gates on.

There is no CM recipe for this artifact (MLPerf submitters find a wrong layout, class offset or
preprocessing only inside the benchmark harness); its options follow the other tables so that the
form, the CLI and CM-style tags (``_batch_size.32``) come from this one declaration.
"""

from __future__ import annotations

from imagenet_ops.core.variations import Option, VariationTable

ARTIFACT = "imagenet_accuracy"
VERSION = "1.0.0"
RELEASE_NOTES = {
    "1.0.0": "First version: top-1 and top-5 of a published ResNet-50 variant on a published preprocessed "
    "validation set, run on the model's own CPU runtime, with the per-class confusion summary; gated on "
    "MLPerf's target for the full set and on the given expectation otherwise.",
}

FULL_SET_IMAGES = 50_000
"""The ImageNet 2012 validation set: only a set this size is held to MLPerf's target."""
MLPERF_REFERENCE_TOP1 = 76.46
"""ResNet-50 v1.5 FP32 top-1 (%) of MLPerf inference's reference (OpenCV preprocessing)."""
MLPERF_TARGET_FRACTION = 0.99
"""The submission checker's bar: 99 % of the reference accuracy."""
MLPERF_TARGET_TOP1 = round(MLPERF_REFERENCE_TOP1 * MLPERF_TARGET_FRACTION, 4)  # 75.6954
DEFAULT_BATCH_SIZE = 32
"""Images per inference call when neither the form nor a fixed-shape model says otherwise."""
TOP_K = 5

ACCURACY_TABLE = VariationTable(
    artifact=ARTIFACT,
    groups=(),
    options=(
        Option(
            "batch_size",
            "integer",
            "Batch size",
            "Images per inference call. Empty: the model's fixed batch (TensorFlow with fix-input-shape), "
            f"else {DEFAULT_BATCH_SIZE}. TFLite and ncnn run one image per call whatever is set.",
            minimum=1,
            maximum=1024,
            tag_prefix="batch_size.",
            section="Check",
        ),
        Option(
            "expected_top1",
            "number",
            "Expected top-1 (%)",
            "The top-1 accuracy, in percent, a set other than the full 50,000 images must reach to pass. Empty: "
            "such a set is measured and published without a pass/fail verdict. The full set is always held "
            f"to MLPerf's target ({MLPERF_TARGET_TOP1}% = 99% of {MLPERF_REFERENCE_TOP1}%).",
            minimum=0,
            maximum=100,
            tag_prefix="expected_top1.",
            section="Check",
        ),
    ),
)
