"""The calibration report: ``calib_report.json`` (machine-readable), ``calib_report.txt`` (for people), a
range chart (``calib_ranges.png``) and the one-paragraph summary the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path


def summary_text(report: dict) -> str:
    final = report["accuracy"]["final"]
    full = report["accuracy"]["int8"]
    lines = ["INT8 calibration of {}: {} on {} frames ({}), {} activation tensors".format(
        Path(report["model"]).name, report["method"], report["frames"]["calibration"], report["source"],
        len(report["ranges"]))]
    n_held = report["frames"]["holdout"]
    evaluated = "{} held-out frame{}".format(n_held, "" if n_held == 1 else "s") if n_held \
        else "the calibration frames (no held-out frame left)"
    lines.append("  {} on {}: {:.3f} (drop {:.3f}, allowed {:.3f}) -> {}".format(
        report["accuracy"]["metric"], evaluated, final["agreement"], final["drop"], report["threshold"],
        "PASS" if report["passed"] else "FAIL"))
    if final.get("pose_ap") is not None:
        lines.append("  (AP50 {:.3f}, AP75 {:.3f}; FP32 found {} people)".format(
            final["pose_ap50"], final["pose_ap75"], final["people_fp32"]))
    if report["float_nodes"]:
        lines.append("  all-INT8 agreement was {:.3f}; kept in float (mixed precision, {} of {} layers): {}".format(
            full["agreement"], len(report["float_nodes"]), len(report["float_nodes"]) + len(report["quantized_nodes"]),
            _names(report["float_nodes"])))
        if not report["quantized_nodes"]:
            lines.append("  INT8 does not hold up for this model at this threshold: every layer had to stay in "
                         "float -- build FP16 instead, or try another --method / more representative frames")
    else:
        lines.append("  kept in float: none")
    methods = report["accuracy"].get("methods") or {}
    if methods:
        lines.append("  all-INT8 agreement by calibrator (same frames): " + ", ".join(
            "{} {:.3f}".format(m, a) for m, a in methods.items()))
        best = max(methods, key=lambda m: methods[m])
        if best != report["method"] and methods[best] > methods[report["method"]] + 0.02:
            lines.append("  hint: --method {} keeps more accuracy for this model".format(best))
    for name, err in final["map_errors"].items():
        lines.append("  {}: mean |err| {:.4f}, max |err| {:.4f}, relative L2 {:.4f}".format(
            name, err["mean_abs"], err["max_abs"], err["rel_l2"]))
    if report["accuracy"].get("note"):
        lines.append("  note: " + report["accuracy"]["note"])
    lines.append("  wrote {} ({} {})".format(", ".join(Path(p).name for p in report["files"].values()),
                                            "TensorRT cache header", report["cache_header"]))
    return "\n".join(lines)


def _names(names, shown=6):
    text = ", ".join(names[:shown])
    return text + (" (+{} more: calib_report.txt)".format(len(names) - shown) if len(names) > shown else "")


def ranges_table(report: dict) -> str:
    rows = ["{:<48} {:>11} {:>11} {:>11} {:>11} {:>9}".format("tensor", "min", "max", "amax", "scale", "clipped")]
    for name, r in report["ranges"].items():
        rows.append("{:<48} {:>11.5g} {:>11.5g} {:>11.5g} {:>11.5g} {:>8.4f}%".format(
            name[-48:], r["min"], r["max"], r["amax"], r["scale"], 100.0 * r["clipped_fraction"]))
    return "\n".join(rows)


def sensitivity_table(report: dict) -> str:
    if not report["sensitivity"]:
        return ""
    rows = ["per-layer sensitivity (map error with only that layer quantised; higher = more sensitive):"]
    rows += ["  {:<40} {:.5f}{}".format(name, err, "  <- float" if name in report["float_nodes"] else "")
             for name, err in report["sensitivity"]]
    return "\n".join(rows)


def write_report(report: dict, out_dir: Path, plot: bool = True) -> dict:
    """Write JSON + text (+ chart); returns {"json": path, "text": path[, "plot": path]}."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "calib_report.json", "text": out_dir / "calib_report.txt"}
    if plot:
        paths["plot"] = out_dir / "calib_ranges.png"
    report["files"].update({"report": str(paths["json"]), "report_text": str(paths["text"])})
    if plot:
        report["files"]["plot"] = str(paths["plot"])
    report["summary"] = summary_text(report)
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    floats = "kept in float: " + (", ".join(report["float_nodes"]) or "none")
    text = [report["summary"], "", floats, "", sensitivity_table(report), "",
            "activation ranges ({}):".format(report["method"]), ranges_table(report)]
    paths["text"].write_text("\n".join(t for t in text if t is not None) + "\n")
    if plot:
        plot_ranges(report, paths["plot"])
    return paths


def plot_ranges(report: dict, path: Path):
    """Bar chart per tensor: observed max |x| and the chosen amax (log scale) -- where clipping happens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["ranges"])
    absmax = [max(report["ranges"][n]["absmax"], 1e-6) for n in names]
    amax = [report["ranges"][n]["amax"] for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], absmax, width=0.4, label="observed max |x|")
    ax.bar([x + 0.2 for x in xs], amax, width=0.4, label="INT8 amax ({})".format(report["method"]))
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([n[-24:] for n in names], rotation=75, fontsize=7)
    ax.set_title("{}: activation ranges".format(Path(report["model"]).name))
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=90, metadata={"Software": None})
    plt.close(fig)
