"""Training data: COCO keypoints and synthetic people, turned into tf.data pipelines of OpenPose targets."""

from edge_sdk.training.data.sample_sources import Sample, SyntheticSource, open_source

__all__ = ["Sample", "SyntheticSource", "open_source"]
