"""File-level rewrite: load, run passes, save, print a line per pass (the API behind `edge-sdk rewrite`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import onnx

from edge_sdk.errors import ConfigError
from edge_sdk.graph import parse_pass_list, run_passes
from edge_sdk.graph.common import PassReport, check_outputs, get_meta, load_model


def format_report(report: PassReport) -> str:
    head = "{:<11} nodes {:>4} -> {:<4}".format(report.name, report.nodes_before, report.nodes_after)
    return head + ("  " + "; ".join(report.changes) if report.changes else "  (no change)")


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    directory = os.path.dirname(os.path.abspath(str(path)))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise ConfigError("cannot write {}: directory {} does not exist or is not writable".format(path, directory))
    onnx.save(model, str(path))


def rewrite_file(src: str, dst: str, passes: str | list[str], options: dict[str, dict[str, Any]] | None = None,
                 echo: Callable[[str], None] | None = None) -> list[PassReport]:
    names = parse_pass_list(passes) if isinstance(passes, str) else list(passes)
    model = load_model(src)
    check_outputs(model, get_meta(model), where=str(src))
    model, meta, reports = run_passes(model, names, options,
                                      progress=(lambda r: echo(format_report(r))) if echo else None)
    onnx.checker.check_model(model)
    save_model(model, dst)
    if echo:
        echo("wrote {} ({} nodes; input {} {} {}x{}; outputs {})".format(
            dst, len(model.graph.node), meta.input.dtype, meta.input.layout, meta.input.width, meta.input.height,
            ", ".join(o.name for o in model.graph.output)))
    return reports
