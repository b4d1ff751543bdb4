"""Where recorded poses live: the schema, the rows a message becomes, and opening a store by URL.

Schema (the same in SQLite and PostgreSQL), chosen for the questions users ask -- who was where, when;
how many people per camera per hour:

- ``frames``: one row per message, primary key ``(device, ts, seq)``. ``seq`` restarts at 0 when a device
  restarts, so ``ts`` (capture time) is part of the key; the key is also the ``(device, time)`` index.
  ``recorded`` is when the recorder wrote it (``recorded - ts`` is the end-to-end lag).
- ``people``: one row per person per frame, primary key ``(device, ts, seq, person)``; ``score``, the centre
  ``x, y`` of the found joints (for zone counts in plain SQL) and ``keypoints`` as float32 ``[17, 3]``
  little-endian bytes (x, y, score in frame pixels).

Every insert is ``ON CONFLICT DO NOTHING``: a QoS 1 re-delivery, a restarted recorder re-reading its session
or two workers seeing the same message all leave exactly one row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import ConfigError, EdgeSdkError

SCHEMA_VERSION = 1

FRAME_COLUMNS = ("device", "ts", "seq", "people", "width", "height", "latency_ms", "recorded")
PEOPLE_COLUMNS = ("device", "ts", "seq", "person", "score", "x", "y", "keypoints")


class StoreError(EdgeSdkError):
    """A database that cannot be reached or does not hold our schema."""


@dataclass
class WriteResult:
    """What one batch did: frames newly stored, and frames that were already there (duplicates)."""

    stored: int
    duplicates: int


def batch_rows(messages: list[dict], recorded: float) -> tuple[list[tuple], list[tuple]]:
    """Validated pose messages -> their ``frames`` rows and ``people`` rows (keypoints converted in one go)."""
    frames, owners, keypoints = [], [], []
    for msg in messages:
        device, ts, seq = msg["device"], float(msg["ts"]), int(msg["seq"])
        people = msg["people"]
        latency = msg.get("latency_ms") or {}
        total = latency.get("total", sum(latency.values()) if latency else None)
        frames.append((device, ts, seq, len(people), msg["frame"]["w"], msg["frame"]["h"], total, recorded))
        for i, person in enumerate(people):
            owners.append((device, ts, seq, i, float(person.get("score", 0.0))))
            keypoints.append(person["keypoints"])
    if not owners:
        return frames, []
    kps = np.asarray(keypoints, dtype="<f4").reshape(-1, 17, 3)
    found = kps[:, :, 2] > 0
    centre = (kps[:, :, :2] * found[:, :, None]).sum(axis=1) / np.maximum(found.sum(axis=1), 1)[:, None]
    blobs = [k.tobytes() for k in kps]
    people_rows = [owner + (x, y, blob) for owner, (x, y), blob in zip(owners, centre.tolist(), blobs)]
    return frames, people_rows


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``2h``, ``7d`` or plain seconds -> seconds (ConfigError if not a positive duration)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = str(text).strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ConfigError("duration {!r}: expected a number and a unit, e.g. 30s, 10m, 2h, 7d".format(text)) from None
    if not 0 < seconds < 1e10:
        raise ConfigError("duration {!r} must be positive".format(text))
    return seconds


class Store:
    """The operations the recorder and the query need; SQLite and PostgreSQL implement them."""

    placeholder = "?"

    def write(self, messages: list[dict], recorded: float | None = None) -> WriteResult:
        """Insert a batch in one transaction; a message already stored is counted as a duplicate."""
        frames, people = batch_rows(messages, time.time() if recorded is None else recorded)
        stored = self._insert(frames, people)
        return WriteResult(stored=stored, duplicates=len(frames) - stored)

    def _sql_insert(self, table: str, columns: tuple) -> str:
        marks = ", ".join([self.placeholder] * len(columns))
        return "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING".format(table, ", ".join(columns), marks)

    def _insert(self, frames: list[tuple], people: list[tuple]) -> int:
        raise NotImplementedError

    def delete_older_than(self, ts: float) -> int:
        """Retention: drop frames and people captured before ``ts``; returns the frames removed."""
        raise NotImplementedError

    def select(self, sql: str, params: list) -> list[tuple]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(url: str, create: bool = True) -> Store:
    """``postgresql://...`` (or ``postgres://``) -> PostgreSQL; anything else is a SQLite file path.

    ``create``: make the tables if missing (the recorder); False for readers (a missing SQLite file is an error).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from edge_sdk.fleet.postgres_store import PostgresStore

        return PostgresStore(url, create=create)
    from edge_sdk.fleet.sqlite_store import SqliteStore

    return SqliteStore(url, create=create)


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        userinfo, host = rest.rsplit("@", 1)
        return "{}://{}@{}".format(scheme, userinfo.split(":", 1)[0], host)
    return url
