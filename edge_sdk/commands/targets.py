"""`edge-sdk targets` (table of known devices) and `edge-sdk targets show NAME` (one profile in full)."""


def register(subparsers):
    parser = subparsers.add_parser("targets", help="list target device profiles, or show one",
                                   description="Known target devices (targets/*.toml).")
    parser.add_argument("action", nargs="?", choices=["show"], help="`show NAME`: one profile in full")
    parser.add_argument("name", nargs="?", help="target name (with `show`)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def format_table(rows, headers):
    """A plain left-aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join("{:<%d}" % w for w in widths)
    out = [line.format(*headers).rstrip(), line.format(*["-" * w for w in widths])]
    out += [line.format(*[str(x) for x in row]).rstrip() for row in rows]
    return "\n".join(out)


def _yes(flag):
    return "yes" if flag else "no"


def run(args):
    import json

    from edge_sdk.errors import ConfigError
    from edge_sdk.targets import get_target, load_targets

    if args.action == "show":
        if not args.name:
            raise ConfigError("`edge-sdk targets show` needs a target name, e.g. `edge-sdk targets show jetson-nano`")
        target = get_target(args.name)
        data = target.to_dict()
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        width = max(len(k) for k in data)
        data["stacks"] = ["; ".join(s.label for s in target.stacks)] if target.stacks else []
        for key, value in data.items():
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value) or "-"
            elif isinstance(value, dict):
                value = ", ".join("{}={}".format(k, v) for k, v in value.items()) or "-"
            print("{:<{w}}  {}".format(key, "-" if value is None else value, w=width))
        print("{:<{w}}  {}".format("file", target.path, w=width))
        return 0
    if args.name:
        raise ConfigError("unexpected argument '{}'; did you mean `edge-sdk targets show {}`?"
                          .format(args.name, args.name))
    targets = load_targets()
    if args.json:
        print(json.dumps([t.to_dict() for t in targets.values()], indent=2))
        return 0
    rows = []
    for t in targets.values():
        rows.append([
            t.name, (t.sm + ("+" if t.compute_capability_is_minimum else "")) if t.sm else "-",
            t.architecture or "-", _yes(t.fast_fp16) if t.has_gpu else "-",
            _yes(t.fast_int8) if t.has_gpu else "-", t.dla_cores, t.jetpack or "-", t.tensorrt or "-",
            t.cuda or "-", t.python or "-", "{} GB".format(t.memory_mb // 1024) if t.memory_mb else "-",
            "{}x{}".format(t.input_width, t.input_height), t.default_model,
        ])
    print(format_table(rows, ["TARGET", "SM", "GPU", "FP16", "INT8", "DLA", "JETPACK", "TRT", "CUDA", "PYTHON",
                              "MEMORY", "INPUT", "MODEL"]))
    return 0
