"""The imagenet_preprocessed artifact (CM get-preprocessed-dataset-imagenet): MLPerf-preprocessed validation tensors."""

from imagenet_ops.preprocessed.job import DECLARATION

__all__ = ["DECLARATION"]
