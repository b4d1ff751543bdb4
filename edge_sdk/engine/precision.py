"""Which precision and which accelerator a build uses, decided from the target profile, never silently.

INT8 asked for on a GPU without fast INT8 (Jetson Nano sm_53, TX2 sm_62: no DP4A / INT8 Tensor Cores) builds
FP16 and says why (``--strict``: an error instead). INT8 on a capable target needs calibration data.
DLA only where the profile has DLA cores; DLA runs FP16 or INT8 only, with GPU fallback for other layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sdk.errors import ConfigError
from edge_sdk.targets import Target

PRECISIONS = ("fp32", "fp16", "int8", "best")


@dataclass
class PrecisionDecision:
    requested: str
    used: str
    reason: str | None = None
    needs_calibration: bool = False
    dla_core: int | None = None

    def to_dict(self):
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


def decide_precision(target: Target, requested: str | None = None, *, have_calibration: bool = False,
                     strict: bool = False, dla_core: int | None = None) -> PrecisionDecision:
    """``requested``: fp32 | fp16 | int8 | best | None (None: FP16 where the GPU has fast FP16, else FP32)."""
    if requested is not None and requested not in PRECISIONS:
        raise ConfigError("unknown precision '{}'; use one of --fp16, --int8, --best".format(requested))
    label = requested or "default"

    def refuse_or(used: str, reason: str) -> PrecisionDecision:
        if strict:
            raise ConfigError(reason + " (--strict makes this an error; drop --strict to accept {})"
                              .format(used.upper()))
        return PrecisionDecision(label, used, reason)

    if target.backend == "onnxruntime":
        if dla_core is not None:
            raise ConfigError("target '{}' has no DLA; drop --dla".format(target.name))
        if requested in ("fp16", "int8"):
            return refuse_or("fp32", "target '{}' runs ONNX Runtime on the CPU in FP32; {} applies to "
                                     "TensorRT targets only".format(target.name, requested.upper()))
        return PrecisionDecision(label, "fp32")

    decision: PrecisionDecision
    if requested == "int8":
        if not target.fast_int8:
            decision = refuse_or("fp16", "{} ({}) has no fast INT8 (no DP4A / INT8 Tensor Cores): INT8 would be "
                                         "slower than FP16, building FP16 instead".format(target.name, target.sm))
        elif not have_calibration:
            raise ConfigError("--int8 needs calibration images: pass --calib DIR (a folder or video of ~500 "
                              "representative frames from the camera) or build with --fp16")
        else:
            decision = PrecisionDecision(label, "int8", needs_calibration=True)
    elif requested == "best":
        if target.fast_int8 and have_calibration:
            decision = PrecisionDecision(label, "int8", needs_calibration=True)
        elif target.fast_int8:
            decision = PrecisionDecision(label, "fp16", "--best without --calib: FP16 (pass --calib DIR for INT8)")
        elif target.fast_fp16:
            decision = PrecisionDecision(label, "fp16", "{} ({}) has no fast INT8: FP16 is its best precision"
                                         .format(target.name, target.sm))
        else:
            decision = PrecisionDecision(label, "fp32", "{} has neither fast FP16 nor INT8".format(target.name))
    elif requested == "fp16" or requested is None:
        if target.fast_fp16:
            decision = PrecisionDecision(label, "fp16")
        else:
            decision = refuse_or("fp32", "{} ({}) has no fast FP16, building FP32".format(target.name, target.sm))
    else:
        decision = PrecisionDecision(label, "fp32")

    if dla_core is not None:
        if target.dla_cores == 0:
            raise ConfigError("target '{}' has no DLA cores; drop --dla (DLA exists on Xavier NX/AGX Xavier, Orin "
                              "NX and AGX Orin)".format(target.name))
        if not 0 <= dla_core < target.dla_cores:
            raise ConfigError("--dla {}: target '{}' has DLA cores 0..{}".format(dla_core, target.name,
                                                                                target.dla_cores - 1))
        if decision.used == "fp32":
            raise ConfigError("DLA runs FP16 or INT8 only; add --fp16 or --int8 to use --dla")
        decision.dla_core = dla_core
    return decision
