"""OpenPose models with swappable backbones (see :mod:`edge_sdk.training.models.registry` to add one)."""

from edge_sdk.training.models.openpose import ModelConfig, build_model
from edge_sdk.training.models.registry import BACKBONES, get_backbone, register_backbone, scaled

__all__ = ["BACKBONES", "ModelConfig", "build_model", "get_backbone", "register_backbone", "scaled"]
