"""The training run configuration, saved as ``config.json`` in the run directory (export reads it back)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edge_sdk.training.augment import AugmentConfig
from edge_sdk.training.models import ModelConfig

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.model_meta import InputSpec

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
HISTORY_FILE = "history.jsonl"


@dataclasses.dataclass
class TrainConfig:
    """One training run. ``steps`` wins over ``epochs`` when both are given."""

    output: str = "runs/train"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: str = "synthetic"
    steps: int | None = None
    epochs: float | None = None
    batch: int = 8
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # cosine | step | constant
    warmup_steps: int = 100
    momentum: float = 0.9
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    input_spec: dict = dataclasses.field(default_factory=dict)  # normalisation (InputSpec fields)
    gpus: int = 1
    cpu_devices: int = 0  # >1: split the CPU into logical devices (tests the multi-device path without GPUs)
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    resume: str | None = None  # a run directory to continue from (default: this run's own checkpoints)
    progress: bool = True

    def spec(self) -> InputSpec:
        """The model input contract this run trains with (normalisation stored in the exported model)."""
        fields = dict(self.input_spec)
        fields.update(height=self.model.input_height, width=self.model.input_width)
        return InputSpec.from_dict(dict(InputSpec().to_dict(), **fields))

    def validate(self) -> TrainConfig:
        self.model = self.model.resolved()
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError("unknown optimizer {!r}; known: adam, sgd".format(self.optimizer))
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError("unknown schedule {!r}; known: cosine, step, constant".format(self.schedule))
        if self.batch < 1:
            raise ConfigError("batch must be >= 1, got {}".format(self.batch))
        if self.steps is None and self.epochs is None:
            raise ConfigError("give --steps or --epochs")
        return self

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_spec"] = self.spec().to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["model"] = ModelConfig.from_dict(values.get("model", {}))
        values["augment"] = AugmentConfig.from_dict(values.get("augment", {}))
        return cls(**values)

    def save(self, run_dir: Path) -> None:
        (Path(run_dir) / CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def load_run_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig of an existing run directory, or a clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("run directory {} does not exist; give the -o directory of `edge-sdk train`".format(run_dir))
    file = run_dir / CONFIG_FILE
    if not file.is_file():
        raise ConfigError("{} is not a training run directory (no {}); give the -o directory of "
                          "`edge-sdk train`".format(run_dir, CONFIG_FILE))
    try:
        return TrainConfig.from_dict(json.loads(file.read_text()))
    except (ValueError, TypeError) as exc:
        raise ConfigError("cannot read {}: {}".format(file, exc)) from None


def latest_checkpoint(run_dir: Path) -> str | None:
    """Path prefix of the newest checkpoint of a run, or None."""
    import tensorflow as tf

    directory = Path(run_dir) / CHECKPOINT_DIR
    return tf.train.latest_checkpoint(str(directory)) if directory.is_dir() else None
