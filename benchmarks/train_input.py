"""Does the tf.data input pipeline keep up with training? Prints images/s of both and their ratio.

Input: the full training pipeline (synthetic people or COCO -> augmentation -> target rendering -> colour
jitter -> batching, parallel map + prefetch), consumed as fast as possible. Training: TinyVGG train steps
(forward + backward + Adam) on one cached batch, so that this number is the pure compute demand on the
pipeline. Both run in this process, on this machine. Goal: ratio >= 1.5.

    python benchmarks/train_input.py [--model tinyvgg --input 384x256 --batch 8 --data synthetic]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(iterator, batch: int, seconds: float, minimum: int, run=None) -> float:
    """images/s over at least ``minimum`` batches and ``seconds`` (after one warm-up batch)."""
    item = next(iterator)
    if run is not None:
        run(*item)
    count, start = 0, time.perf_counter()
    while count < minimum or time.perf_counter() - start < seconds:
        item = next(iterator)
        if run is not None:
            loss, _ = run(*item)
            loss.numpy()
        count += 1
    return count * batch / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinyvgg")
    parser.add_argument("--input", default="384x256", help="WxH")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--data", default="synthetic:2000")
    parser.add_argument("--seconds", type=float, default=20.0, help="minimum time per measurement")
    parser.add_argument("--min-batches", type=int, default=3)
    args = parser.parse_args(argv)

    import tensorflow as tf
    from edge_sdk.training.augment import AugmentConfig
    from edge_sdk.training.config import TrainConfig
    from edge_sdk.training.data import open_source
    from edge_sdk.training.data.input_pipeline import make_dataset
    from edge_sdk.training.loop import make_optimizer, make_train_step
    from edge_sdk.training.models import ModelConfig, build_model

    width, height = (int(v) for v in args.input.split("x"))
    source = open_source(args.data, (height, width))
    dataset = make_dataset(source, (height, width), args.batch, AugmentConfig(), seed=0)
    input_rate = measure(iter(dataset), args.batch, args.seconds, args.min_batches)
    print("input pipeline ({}, augmentation on): {:.1f} images/s".format(args.data, input_rate), flush=True)

    config = TrainConfig(model=ModelConfig(backbone=args.model, input_height=height, input_width=width,
                                           width=args.width), steps=1000, batch=args.batch).validate()
    strategy = tf.distribute.get_strategy()
    model = build_model(config.model)
    optimizer = make_optimizer(config, 1000)
    step = make_train_step(strategy, model, optimizer, args.batch)
    cached = dataset.take(1).cache().repeat()
    train_rate = measure(iter(cached), args.batch, args.seconds, args.min_batches, run=step)
    print("training {} at {}x{} (batch {}): {:.1f} images/s ({:.2f} steps/s)".format(
        args.model, width, height, args.batch, train_rate, train_rate / args.batch))
    ratio = input_rate / train_rate
    print("ratio input/training: {:.1f}x ({})".format(ratio, "the input keeps up" if ratio >= 1.5 else
                                                        "INPUT-BOUND: raise parallelism or simplify augmentation"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
