"""ImageNet 2012 facts every artifact shares: counts, tar names and md5s, the ResNet-50 channel means.

One home for each number, so the training converter, the preprocessor, the aux check and the
model's env cannot drift apart.
"""

from __future__ import annotations

import re

NUM_CLASSES = 1000
NUM_VAL_IMAGES = 50_000

TRAIN_TAR = "ILSVRC2012_img_train.tar"
TRAIN_TAR_MD5 = "1d675b47d978889d74fa0da5fadfb00e"
VAL_TAR = "ILSVRC2012_img_val.tar"
VAL_TAR_MD5 = "29b22e2961454d5413ddabcf34fc5622"
VAL_TAR_SIZE = 6_744_924_160
VAL_TAR_URLS = ("https://image-net.org/data/ILSVRC/2012/ILSVRC2012_img_val.tar",)

RESNET50_CHANNEL_MEANS = "123.68 116.78 103.94"
"""RGB means the MLPerf ResNet-50 (TF v1.5) subtracts, as CM writes them in env dicts."""

WNID = re.compile(r"^n\d{8}$")
"""A WordNet id naming a class, e.g. ``n01440764``."""
