"""The training loop: multi-stage masked L2 loss, Adam/SGD with a schedule, checkpoints + resume,
TensorBoard scalars, a tqdm bar with loss and images/s, and tf.distribute for several devices.

Distribution is TensorFlow's own: ``MirroredStrategy`` over the GPUs of one host (``--gpus N``),
``MultiWorkerMirroredStrategy`` across hosts when ``TF_CONFIG`` names several workers (run the same command
on every host), and MirroredStrategy over logical CPU devices (``cpu_devices``) to test that path
without GPUs. ``batch`` is the global batch, split evenly over the replicas.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge_sdk.training.config import CHECKPOINT_DIR, HISTORY_FILE, TENSORBOARD_DIR, TrainConfig, latest_checkpoint

from edge_sdk.errors import ConfigError


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    steps: int  # the global step reached
    losses: list[float]  # total loss of every step run in this call
    images_per_second: float  # training throughput after the first (compiling) step
    replicas: int


def make_strategy(gpus: int = 1, cpu_devices: int = 0):
    """The tf.distribute strategy for this machine and request (see the module docstring)."""
    import tensorflow as tf

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if len(workers) + len(tf_config.get("cluster", {}).get("chief", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_devices and cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
        except RuntimeError:  # already initialised (e.g. a second run in one process): keep what is there
            pass
        devices = ["/cpu:{}".format(i) for i in range(len(tf.config.list_logical_devices("CPU")))]
        return tf.distribute.MirroredStrategy(devices[:cpu_devices],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    physical = tf.config.list_physical_devices("GPU")
    if gpus > len(physical) and gpus > 1:
        raise ConfigError("--gpus {} asked for, but TensorFlow sees {} GPU(s); check CUDA_VISIBLE_DEVICES and "
                          "that tensorflow[and-cuda] is installed".format(gpus, len(physical)))
    if gpus > 1:
        return tf.distribute.MirroredStrategy(["/gpu:{}".format(i) for i in range(gpus)])
    if physical and gpus >= 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


def openpose_loss(outputs, targets, global_batch: int):
    """Sum over stages of the masked L2 error (summed over channels, averaged over pixels and the global
    batch), plus the per-stage terms. Masked cells (crowds, unlabelled people) cost nothing."""
    import tensorflow as tf

    mask = targets["mask"]
    pixels = float(mask.shape[1] * mask.shape[2])
    stages = []
    for i in range(0, len(outputs), 2):
        err = tf.reduce_sum(mask * tf.square(outputs[i] - targets["heatmaps"]))
        err += tf.reduce_sum(mask * tf.square(outputs[i + 1] - targets["pafs"]))
        stages.append(err / (global_batch * pixels))
    return tf.add_n(stages), stages


def write_scalars(writer, scalars: dict[str, float], step: int) -> None:
    """TensorBoard scalars through TensorFlow's own summary ops (no tensorboard package needed to write)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    with writer.as_default(step=step):
        for tag, value in scalars.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)
    writer.flush()


def make_optimizer(config: TrainConfig, total_steps: int):
    import keras

    warmup = min(config.warmup_steps, max(0, total_steps // 10))
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, max(1, total_steps - warmup), alpha=0.02,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    elif config.schedule == "step":
        bounds = [max(1, int(total_steps * 2 / 3)), max(2, int(total_steps * 8 / 9))]
        rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            bounds, [config.learning_rate, config.learning_rate * 0.1, config.learning_rate * 0.01])
    else:
        rate = config.learning_rate
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=True)
    return keras.optimizers.Adam(rate)


def make_train_step(strategy, model, optimizer, global_batch: int, step=None):
    """A compiled ``train_step(images, targets) -> (loss, per-stage losses)`` for (distributed) batches."""
    import tensorflow as tf

    @tf.function
    def train_step(images, targets):
        def replica_step(images, targets):
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                loss, stages = openpose_loss(outputs, targets, global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, tf.stack(stages)

        loss, stages = strategy.run(replica_step, args=(images, targets))
        if step is not None:
            step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, stages, axis=None))

    return train_step


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


class _Throughput:
    """Images per second after the first step (which compiles the graph and is not timed)."""

    def __init__(self, batch: int):
        self.batch, self.start, self.images = batch, None, 0

    def step(self) -> float:
        if self.start is None:
            self.start = time.perf_counter()
        else:
            self.images += self.batch
        return self.rate()

    def rate(self) -> float:
        return self.images / max(1e-9, time.perf_counter() - self.start) if self.images else 0.0


def train(config: TrainConfig, source=None, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Run (or continue) a training run; returns when ``config.steps`` global steps are done."""
    import tensorflow as tf
    from edge_sdk.training.data import open_source
    from edge_sdk.training.data.input_pipeline import make_dataset
    from tqdm import tqdm

    config.validate()
    strategy = make_strategy(config.gpus, config.cpu_devices)
    import keras

    keras.utils.set_random_seed(config.seed)  # weight init and shuffling: a run is reproducible
    replicas = _check_replicas(config, strategy)
    resume_dir = _resume_dir(config)
    chief = _is_chief(strategy)
    run_dir = Path(config.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    input_hw = (config.model.input_height, config.model.input_width)
    source = source if source is not None else open_source(config.data, input_hw, seed=config.seed)
    total_steps = _total_steps(config, len(source))
    if chief:
        config.save(run_dir)
    dataset = make_dataset(source, input_hw, config.batch, config.augment, config.spec(), seed=config.seed)
    distributed = strategy.experimental_distribute_dataset(dataset)
    model, optimizer, step = _build_state(strategy, config, total_steps)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    checkpoint_dir = run_dir / CHECKPOINT_DIR if chief else Path(tempfile.mkdtemp(prefix="edge_sdk_worker_ckpt_"))
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=config.keep_checkpoints)
    _restore(checkpoint, latest_checkpoint(resume_dir) if resume_dir is not None else manager.latest_checkpoint,
             step)

    train_step = make_train_step(strategy, model, optimizer, config.batch, step)
    writer = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR)) if chief else tf.summary.create_noop_writer()
    history = open(run_dir / HISTORY_FILE, "a") if chief else None
    start = int(step.numpy())
    losses: list[float] = []
    bar = tqdm(total=total_steps, initial=start, unit="step", disable=not (config.progress and chief),
               dynamic_ncols=True, desc="train " + config.model.backbone)
    throughput = _Throughput(config.batch)
    iterator = iter(distributed)
    try:
        for current in range(start + 1, total_steps + 1):
            loss, stages = train_step(*next(iterator))
            value = float(loss.numpy())
            losses.append(value)
            rate = throughput.step()
            bar.update(1)
            bar.set_postfix(loss="{:.4f}".format(value), img_s="{:.1f}".format(rate))
            if on_step is not None:
                on_step(current, value)
            if current % config.log_every == 0 or current == total_steps:
                _log_step(writer, history, optimizer, current, value, stages, rate)
            if current % config.checkpoint_every == 0 and current != total_steps:
                manager.save(checkpoint_number=current)
        if total_steps > start or manager.latest_checkpoint is None:
            manager.save(checkpoint_number=int(step.numpy()))
    finally:
        bar.close()
        writer.close()
        if history is not None:
            history.close()
        if not chief:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainResult(run_dir, int(step.numpy()), losses, throughput.rate(), replicas)


def _check_replicas(config: TrainConfig, strategy) -> int:
    replicas = strategy.num_replicas_in_sync
    if config.batch % replicas:
        raise ConfigError("--batch {} must be a multiple of the number of replicas ({})".format(
            config.batch, replicas))
    return replicas


def _resume_dir(config: TrainConfig) -> Path | None:
    """The run to resume from (``--resume``), refused when it has no checkpoint."""
    resume_dir = Path(config.resume) if config.resume else None
    if resume_dir is not None and latest_checkpoint(resume_dir) is None:
        raise ConfigError("cannot resume from {}: {}".format(
            resume_dir, "no such directory" if not resume_dir.exists() else "it has no checkpoints/ (give a run "
            "directory written by `edge-sdk train -o`)"))
    return resume_dir


def _total_steps(config: TrainConfig, examples: int) -> int:
    steps_per_epoch = max(1, examples // config.batch)
    return int(config.steps if config.steps is not None else round(config.epochs * steps_per_epoch))


def _build_state(strategy, config: TrainConfig, total_steps: int):
    """(model, optimizer, global step), created under the strategy so they are mirrored."""
    import tensorflow as tf
    from edge_sdk.training.models import build_model

    with strategy.scope():
        model = build_model(config.model)
        optimizer = make_optimizer(config, total_steps)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return model, optimizer, step


def _restore(checkpoint, restore_from: str | None, step) -> None:
    """Continue from a checkpoint (the run's own, or --resume's); one that does not fit the model is refused."""
    import tensorflow as tf

    if not restore_from:
        return
    try:
        checkpoint.restore(restore_from).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        raise ConfigError("checkpoint {} does not fit this model ({}); train into a new -o directory or "
                          "give the same --model/--width/--stages/--input".format(restore_from,
                                                                                  str(exc)[:200])) from None
    print("resumed from {} at step {}".format(restore_from, int(step.numpy())))


def _log_step(writer, history, optimizer, current: int, value: float, stages, rate: float) -> None:
    """TensorBoard scalars, and a line of history.jsonl on the chief."""
    lr = optimizer.learning_rate
    lr = float(lr.numpy() if hasattr(lr, "numpy") else lr)
    per_stage = [float(s) for s in stages.numpy()]
    scalars = {"loss/total": value, "learning_rate": lr, "images_per_second": rate}
    scalars.update({"loss/stage{}".format(i + 1): s for i, s in enumerate(per_stage)})
    write_scalars(writer, scalars, current)
    if history is not None:
        history.write(json.dumps({"step": current, "loss": value, "stages": per_stage, "lr": lr,
                                  "images_per_second": rate}) + "\n")
        history.flush()
