"""`edge-sdk train`: train an OpenPose model (TensorFlow) on COCO keypoints or synthetic people."""

from __future__ import annotations

import argparse

from edge_sdk.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"384x256"`` (width x height) -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 384x256, got {!r}".format(text)) from None
    return height, width


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a pose model (TensorFlow; needs the [train] extra)",
        description="Train an OpenPose-style model. Writes config.json, checkpoints/, tensorboard/ and "
                    "history.jsonl into -o; running again with the same -o resumes.")
    p.add_argument("--model", default="tinyvgg", help="backbone: tinyvgg, mobilenet, vgg19, resnet18 or "
                   "one you registered (--plugin)")
    p.add_argument("--data", default="synthetic", help="coco:PATH (COCO keypoints) or synthetic[:COUNT]")
    p.add_argument("--input", type=parse_size, default=(256, 384), metavar="WxH", help="input size (384x256)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--stages", type=int, default=None, help="OpenPose stages (initial + refinement)")
    p.add_argument("--stage-width", type=int, default=None, help="channels of the stage convs")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="global steps to train to")
    length.add_argument("--epochs", type=float, default=None, help="passes over the data set")
    p.add_argument("--batch", type=int, default=8, help="global batch (split over --gpus)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    p.add_argument("--augment", default="default",
                   help="'none' or e.g. 'scale=0.6:1.2,rotate=30,flip=0.5,translate=0.2,color=0.3,hue=0.03'")
    p.add_argument("--gpus", type=int, default=1, help="GPUs of this host (MirroredStrategy when > 1); "
                   "across hosts set TF_CONFIG on each host (MultiWorkerMirroredStrategy)")
    p.add_argument("--cpu-devices", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue from another run's checkpoints")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="a Python file that registers backbones (edge_sdk.training.models.register_backbone)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="run directory")
    p.set_defaults(func=run)


def load_plugins(files: list[str]) -> None:
    import importlib.util
    from pathlib import Path

    for file in files:
        path = Path(file)
        if not path.is_file():
            raise ConfigError("--plugin {} does not exist".format(file))
        spec = importlib.util.spec_from_file_location("edge_sdk_plugin_" + path.stem, str(path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def run(args) -> int:
    try:
        from edge_sdk.training.augment import AugmentConfig
        from edge_sdk.training.config import TrainConfig
        from edge_sdk.training.loop import train
        from edge_sdk.training.models import ModelConfig
    except ImportError as exc:
        raise ConfigError("training needs the [train] extra ({}); run: pip install -e '.[train]'".format(
            exc)) from None
    load_plugins(args.plugin)
    model = ModelConfig(backbone=args.model, input_height=args.input[0], input_width=args.input[1],
                        width=args.width, stages=args.stages, stage_width=args.stage_width)
    config = TrainConfig(
        output=args.output, model=model, data=args.data, steps=args.steps, epochs=args.epochs, batch=args.batch,
        optimizer=args.optimizer, learning_rate=args.lr, schedule=args.schedule, warmup_steps=args.warmup,
        augment=AugmentConfig.parse(args.augment), gpus=args.gpus, cpu_devices=args.cpu_devices, seed=args.seed,
        checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress)
    if config.steps is None and config.epochs is None:
        config.steps = 2000
    result = train(config)
    last = result.losses[-1] if result.losses else float("nan")
    print("trained {} to step {} on {} replica(s): loss {:.4f}, {:.1f} images/s; run directory {}".format(
        config.model.backbone, result.steps, result.replicas, last, result.images_per_second, result.run_dir))
    print("next: edge-sdk export {} -o model.onnx".format(result.run_dir))
    return 0
