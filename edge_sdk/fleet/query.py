"""Read recorded poses back: ``query(db, device=..., since=..., min_score=...)`` -> numpy arrays.

One row per person per frame (the ``people`` table), ordered by device then time; served by the
``(device, ts, ...)`` primary key. ``edge-sdk query`` prints the same rows as JSON lines or CSV.
"""

from __future__ import annotations

import csv
import datetime
import json
import time
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.fleet.store import open_store, parse_duration
from edge_sdk.runtime.skeleton import COCO17_PARTS

MAX_ROWS = 10_000_000


@dataclass
class PoseRows:
    """People found in the recorded frames, one entry per person: parallel numpy arrays."""

    device: np.ndarray  # str (object) [N]
    ts: np.ndarray  # float64 [N], capture time, seconds since the epoch
    seq: np.ndarray  # int64 [N]
    person: np.ndarray  # int32 [N], index in its frame
    score: np.ndarray  # float32 [N]
    keypoints: np.ndarray  # float32 [N, 17, 3]: x, y (frame pixels), score

    def __len__(self) -> int:
        return len(self.ts)


def parse_time(text: str | float | None, now: float | None = None) -> float | None:
    """A point in time: a duration back from now (``10m``), epoch seconds, or ISO 8601 (UTC if no zone)."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    now = time.time() if now is None else now
    text = text.strip()
    if text and text[-1].lower() in "smhdw" and text[:-1].replace(".", "", 1).isdigit():
        return now - parse_duration(text)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("time {!r}: use a duration back from now (10m, 2h, 7d), epoch seconds or ISO 8601 "
                          "(2026-01-31T14:00:00)".format(text)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def query(db: str, device: str | None = None, since: str | float | None = None, until: str | float | None = None,
          min_score: float | None = None, limit: int | None = None) -> PoseRows:
    """People recorded in ``db`` (SQLite path or postgresql:// URL), filtered by device, time and score."""
    where, params = [], []
    if device is not None:
        where.append("device = ?")
        params.append(device)
    for op, value in ((">=", parse_time(since)), ("<", parse_time(until))):
        if value is not None:
            where.append("ts {} ?".format(op))
            params.append(value)
    if min_score is not None:
        where.append("score >= ?")
        params.append(float(min_score))
    limit = MAX_ROWS if limit is None else int(limit)
    if not 0 < limit <= MAX_ROWS:
        raise ConfigError("--limit must be between 1 and {}".format(MAX_ROWS))
    sql = "SELECT device, ts, seq, person, score, keypoints FROM people{} ORDER BY device, ts, seq, person " \
          "LIMIT {}".format(" WHERE " + " AND ".join(where) if where else "", limit)
    with open_store(db, create=False) as store:
        rows = store.select(sql, params)
    if not rows:
        return PoseRows(np.array([], dtype=object), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int32),
                        np.zeros(0, np.float32), np.zeros((0, 17, 3), np.float32))
    devices, ts, seq, person, score, blobs = zip(*rows)
    return PoseRows(np.array(devices, dtype=object), np.array(ts, np.float64), np.array(seq, np.int64),
                    np.array(person, np.int32), np.array(score, np.float32),
                    np.frombuffer(b"".join(bytes(b) for b in blobs), "<f4").reshape(-1, 17, 3).astype(np.float32))


def write_rows(rows: PoseRows, out: TextIO, fmt: str = "jsonl") -> int:
    """Print ``rows`` as JSON lines (keypoints as 17 x [x, y, score]) or CSV (one column per coordinate)."""
    if fmt == "jsonl":
        for i in range(len(rows)):
            out.write(json.dumps({
                "device": rows.device[i], "ts": float(rows.ts[i]), "seq": int(rows.seq[i]),
                "person": int(rows.person[i]), "score": round(float(rows.score[i]), 4),
                "keypoints": np.round(rows.keypoints[i].astype(np.float64), 3).tolist()},
                separators=(",", ":")) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["device", "ts", "seq", "person", "score"] +
                        ["{}_{}".format(part, axis) for part in COCO17_PARTS for axis in ("x", "y", "score")])
        for i in range(len(rows)):
            writer.writerow([rows.device[i], repr(float(rows.ts[i])), int(rows.seq[i]), int(rows.person[i]),
                             round(float(rows.score[i]), 4)] +
                            [round(v, 3) for v in rows.keypoints[i].astype(np.float64).reshape(-1).tolist()])
    else:
        raise ConfigError("format {!r}: use jsonl or csv".format(fmt))
    return len(rows)
