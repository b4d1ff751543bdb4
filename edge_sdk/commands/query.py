"""`edge-sdk query`: read recorded poses back as JSON lines or CSV (thin shell over edge_sdk.fleet.query)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "query", help="print recorded poses (one row per person per frame) as JSON lines or CSV",
        description="Read what `edge-sdk record` stored, filtered by device, time and person score. Times are a "
                    "duration back from now (10m, 2h, 7d), epoch seconds or ISO 8601 (UTC unless a zone is given).")
    p.add_argument("db", help="poses.sqlite or postgresql://USER@HOST/DB")
    p.add_argument("--device", default=None, help="only this device")
    p.add_argument("--since", default=None, help="from this time (e.g. 10m = the last ten minutes)")
    p.add_argument("--until", default=None, help="before this time")
    p.add_argument("--min-score", type=float, default=None, help="only people with at least this score")
    p.add_argument("--limit", type=int, default=None, help="at most N rows")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output (default: %(default)s)")
    p.add_argument("-o", "--output", default=None, help="write to FILE instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_sdk.fleet.query import query, write_rows

    rows = query(args.db, device=args.device, since=args.since, until=args.until, min_score=args.min_score,
                 limit=args.limit)
    if args.output:
        with open(args.output, "w", newline="") as out:
            write_rows(rows, out, args.format)
    else:
        write_rows(rows, sys.stdout, args.format)
    print("{} rows".format(len(rows)), file=sys.stderr)
    return 0
