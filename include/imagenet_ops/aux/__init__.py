"""The imagenet_aux artifact (CM get-dataset-imagenet-aux): caffe_ilsvrc12 synsets, val/train labels."""

from imagenet_ops.aux.variations import DECLARATION

__all__ = ["DECLARATION"]
