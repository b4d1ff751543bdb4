"""`edge-sdk` command line: a thin shell over the Python API.

Every module in ``edge_sdk/commands/`` defines ``register(subparsers)``; it adds its subcommand(s) and
sets ``func`` (called with the parsed args, returns an exit code). Commands import heavy dependencies
inside ``func`` so that ``edge-sdk --help`` stays fast and works on a device without host extras.
"""

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

from edge_sdk import __version__
from edge_sdk.errors import EdgeSdkError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command module registered."""
    parser = argparse.ArgumentParser(
        prog="edge-sdk",
        description="Train, build, flash and run real-time multi-person pose estimation on NVIDIA Jetson.",
    )
    parser.add_argument("--version", action="version", version="edge-sdk " + __version__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import edge_sdk.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module("edge_sdk.commands." + info.name)
        except (SyntaxError, ImportError) as exc:
            # Host-only commands (train, export, subscribe, ...) need Python >= 3.10 and the [host] extra;
            # on a JetPack 4.6 device (Python 3.6) they must not stop `edge-sdk run` from starting.
            _register_unavailable(subparsers, info.name.replace("_", "-"), exc)
            continue
        module.register(subparsers)
    return parser


def _register_unavailable(subparsers, name, exc):
    """A placeholder for a command this Python cannot load, saying why when it is used."""
    reason = "{}: {}".format(type(exc).__name__, exc)

    def unavailable(_args):
        raise EdgeSdkError(
            "`edge-sdk {}` is not available here (Python {}.{}; {}). It is a host command: run it on a "
            "workstation with Python >= 3.10 and `pip install 'edge-sdk[host]'`.".format(
                name, sys.version_info[0], sys.version_info[1], reason))

    parser = subparsers.add_parser(name, help="(unavailable on this Python: host command)", add_help=False,
                                   prefix_chars="\x00")  # accept any options, then explain
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=unavailable)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``edge-sdk`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except EdgeSdkError as exc:
        from edge_sdk.runtime.redact import redact_text

        print("error: {}".format(redact_text(str(exc))), file=sys.stderr)  # never a camera password
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
