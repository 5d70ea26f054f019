"""The imagenet_aux artifact (CM get-dataset-imagenet-aux): caffe_ilsvrc12 synsets, val/train labels."""
