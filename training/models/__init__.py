"""OpenPose models with swappable backbones (see :mod:`training.models.registry` to add one)."""

from training.models.openpose import ModelConfig, build_model
from training.models.registry import BACKBONES, get_backbone, register_backbone, scaled

__all__ = ["BACKBONES", "ModelConfig", "build_model", "get_backbone", "register_backbone", "scaled"]
