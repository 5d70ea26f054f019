"""The imagenet_training_data artifact (CM prepare-training-data-resnet, TF/TPU imagenet_to_gcs): TFRecords / RecordIO."""
