"""The imagenet_accuracy artifact: a published ResNet-50 variant scored on a published preprocessed set."""

from imagenet_ops.accuracy.job import DECLARATION

__all__ = ["DECLARATION"]
