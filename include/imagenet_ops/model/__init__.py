"""The resnet50_model artifact (CM get-ml-model-resnet50): every framework variant, fetched, fixed and load-checked."""

from imagenet_ops.model.variations import DECLARATION

__all__ = ["DECLARATION"]
