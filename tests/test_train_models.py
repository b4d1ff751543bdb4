"""Every backbone trains (real TensorFlow steps); the registry takes user backbones; bad names are errors."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edge_sdk.training.augment import AugmentConfig  # noqa: E402
from edge_sdk.training.config import TrainConfig  # noqa: E402
from edge_sdk.training.loop import train  # noqa: E402
from edge_sdk.training.models import BACKBONES, ModelConfig, build_model, register_backbone, scaled  # noqa: E402

from edge_sdk.errors import ConfigError  # noqa: E402


def tiny(backbone, **kw):
    return ModelConfig(backbone=backbone, input_height=64, input_width=64, width=0.125, stages=1, stage_width=16,
                       **kw)


@pytest.mark.parametrize("backbone", ["tinyvgg", "mobilenet", "vgg19", "resnet18"])
def test_training_steps_reduce_the_loss(backbone, tmp_path):
    # the same 4 images every step (data set size == batch, no augmentation): the loss must go down
    config = TrainConfig(output=str(tmp_path / "run"), model=tiny(backbone), data="synthetic:4", steps=6, batch=4,
                         learning_rate=3e-3, warmup_steps=0, schedule="constant", augment=AugmentConfig.none(),
                         progress=False)
    result = train(config)
    assert len(result.losses) == 6
    assert all(math.isfinite(v) for v in result.losses)
    assert min(result.losses[-2:]) < result.losses[0]
    assert result.steps == 6
    assert (tmp_path / "run" / "config.json").is_file()
    assert list((tmp_path / "run" / "checkpoints").glob("ckpt-6*"))
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_outputs_every_stage_at_stride_8():
    model = build_model(ModelConfig(backbone="mobilenet", input_height=64, input_width=96, width=0.125, stages=3,
                                    stage_width=8))
    outputs = model(np.zeros((1, 64, 96, 3), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(1, 8, 12, 19), (1, 8, 12, 38)] * 3


def test_user_backbone_in_a_few_lines():
    import keras

    @register_backbone("test_three_convs", stages=1)
    def three_convs(image, width=1.0):
        x = image
        for channels in (16, 24, 32):
            x = keras.layers.Conv2D(scaled(channels, width), 3, strides=2, padding="same", activation="relu")(x)
        return x

    try:
        model = build_model(ModelConfig(backbone="test_three_convs", input_height=32, input_width=48))
        assert [tuple(o.shape) for o in model.outputs] == [(None, 4, 6, 19), (None, 4, 6, 38)]
    finally:
        BACKBONES.pop("test_three_convs")


def test_backbone_with_wrong_stride_is_refused():
    import keras

    register_backbone("test_stride4")(lambda image, width=1.0: keras.layers.MaxPool2D(4)(image))
    try:
        with pytest.raises(ConfigError, match="stride-8"):
            build_model(ModelConfig(backbone="test_stride4", input_height=32, input_width=32))
    finally:
        BACKBONES.pop("test_stride4")


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(backbone="mobilenett"))
    message = str(err.value)
    assert "unknown backbone 'mobilenett'" in message
    assert message.index("mobilenet") < message.index("vgg19")  # nearest first


def test_input_size_must_be_a_multiple_of_the_stride():
    with pytest.raises(ConfigError, match="multiple of 8"):
        ModelConfig(input_height=100, input_width=64).resolved()
