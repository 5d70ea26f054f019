"""The imagenet_training_data artifact (CM prepare-training-data-resnet, TF/TPU imagenet_to_gcs): TFRecords / RecordIO.

* ``variations``: the declaration: variation table, config, version, :class:`TrainingJob` and ``resolve_job``.
* ``inputs``: the optional md5 check of the big tars, and the validation labels.
* ``order``: the global order of both converters (pure: which image goes where, with which label).
* ``plan``: the plan step (list the tars, store the plan in the sink, group the units, cache hits).
* ``units``: a unit's files and its done-record; ``shards`` / ``tfrecord`` / ``recordio``: the writers.
* ``pipeline``: the flow: check md5 -> plan -> write units -> finalize (manifest, CM env).
"""

from imagenet_ops.training.variations import DECLARATION

__all__ = ["DECLARATION"]
