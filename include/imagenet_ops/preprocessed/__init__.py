"""The imagenet_preprocessed artifact (CM get-preprocessed-dataset-imagenet): MLPerf-preprocessed validation tensors."""
