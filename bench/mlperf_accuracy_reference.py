"""The shape of MLPerf inference's reference accuracy run for ResNet-50 on onnxruntime, as one process.

What ``vision/classification_and_detection/python/main.py --profile resnet50-onnxruntime
--accuracy`` does with a preprocessed set, less LoadGen's query scheduling: the ``Imagenet``
dataset reads ``val_map.txt`` and loads every sample's ``.npy`` into memory
(``load_query_samples``: one ``np.load`` per image), ``backend_onnxruntime`` opens the model with
``onnxruntime.SessionOptions()`` as they come, the runner feeds batches of ``--max-batchsize``
(``np.array`` of the samples) to ``session.run(["ArgMax:0"], ...)``, and ``PostProcessArgMax
(offset=-1)`` counts the answers equal to the label. Prints one JSON line: images, good, top-1.

Usage: python bench/mlperf_accuracy_reference.py MODEL.onnx SET_FOLDER [--max-batchsize 32] [--count N]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import onnxruntime as rt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("dataset_path")
    parser.add_argument("--max-batchsize", type=int, default=32)
    parser.add_argument("--count", type=int, default=None)
    args = parser.parse_args()

    # dataset: val_map.txt -> image list and labels; the preprocessed files are <name>.npy
    image_list, labels = [], []
    with open(os.path.join(args.dataset_path, "val_map.txt")) as f:
        for line in f:
            name, label = line.split()
            image_list.append(name)
            labels.append(int(label))
    count = args.count or len(image_list)
    # load_query_samples: every sample in memory before the run
    images = [np.load(os.path.join(args.dataset_path, f"{name}.npy")) for name in image_list[:count]]

    # backend_onnxruntime.load: default session options, the profile's output
    session = rt.InferenceSession(args.model, rt.SessionOptions(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    good = 0
    for start in range(0, count, args.max_batchsize):
        batch = np.array(images[start : start + args.max_batchsize])
        (result,) = session.run(["ArgMax:0"], {input_name: batch})
        for i, predicted in enumerate(result):  # PostProcessArgMax(offset=-1)
            good += int(predicted - 1 == labels[start + i])
    print(json.dumps({"images": count, "good": good, "top1": 100.0 * good / count}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
