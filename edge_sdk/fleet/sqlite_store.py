"""SQLite store: the embedded default (one file, no server). WAL journal so queries read while the recorder
writes; several recorder processes take turns writing (busy timeout)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_sdk.errors import ConfigError
from edge_sdk.fleet.store import FRAME_COLUMNS, PEOPLE_COLUMNS, SCHEMA_VERSION, Store, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    device TEXT NOT NULL, ts REAL NOT NULL, seq INTEGER NOT NULL, people INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, latency_ms REAL, recorded REAL NOT NULL,
    PRIMARY KEY (device, ts, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frames_ts ON frames (ts);
CREATE TABLE IF NOT EXISTS people (
    device TEXT NOT NULL, ts REAL NOT NULL, seq INTEGER NOT NULL, person INTEGER NOT NULL,
    score REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL, keypoints BLOB NOT NULL,
    PRIMARY KEY (device, ts, seq, person)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS people_ts ON people (ts);
"""


class SqliteStore(Store):
    placeholder = "?"

    def __init__(self, path: str, create: bool = True, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ConfigError("{}: no such database (record into it first: edge-sdk record --to {})".format(
                path, path))
        if self.path.is_dir():
            raise ConfigError("{} is a directory: give the database file, e.g. {}/poses.sqlite".format(path, path))
        if not self.path.parent.is_dir():
            raise ConfigError("cannot create {}: folder {} does not exist".format(path, self.path.parent))
        try:
            self.db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                      check_same_thread=False)  # used by one thread at a time
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint, fast
            self.db.executescript(SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise ConfigError("{} is not a usable SQLite database: {}".format(path, exc)) from exc
        self._frames_sql = self._sql_insert("frames", FRAME_COLUMNS)
        self._people_sql = self._sql_insert("people", PEOPLE_COLUMNS)

    def _check_schema(self) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?) ON CONFLICT DO NOTHING",
                        (str(SCHEMA_VERSION),))
        (version,) = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version != str(SCHEMA_VERSION):
            raise ConfigError("{} holds pose schema {} but this edge-sdk writes schema {}".format(
                self.path, version, SCHEMA_VERSION))

    def _insert(self, frames: list[tuple], people: list[tuple]) -> int:
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(self._frames_sql, frames)
                stored = cur.rowcount
                if people:
                    cur.executemany(self._people_sql, people)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full, I/O error
            raise StoreError("SQLite {}: {}".format(self.path, exc)) from exc
        return stored

    def delete_older_than(self, ts: float) -> int:
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("DELETE FROM frames WHERE ts < ?", (ts,))
            removed = cur.rowcount
            cur.execute("DELETE FROM people WHERE ts < ?", (ts,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return removed

    def select(self, sql: str, params: list) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        self.db.close()
