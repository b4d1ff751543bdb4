"""PostgreSQL store (a real server, for several recorder hosts and long retention), through psycopg 3.

Same schema as SQLite (see :mod:`edge_sdk.fleet.store`); batches go through ``executemany`` (psycopg pipelines
it: one round trip per batch, not per row).
"""

from __future__ import annotations

from edge_sdk.errors import ConfigError
from edge_sdk.fleet.store import FRAME_COLUMNS, PEOPLE_COLUMNS, SCHEMA_VERSION, Store, StoreError, redact_url

SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_sdk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    device TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL, people INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, latency_ms DOUBLE PRECISION,
    recorded DOUBLE PRECISION NOT NULL, PRIMARY KEY (device, ts, seq));
CREATE INDEX IF NOT EXISTS frames_ts ON frames (ts);
CREATE TABLE IF NOT EXISTS people (
    device TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL, person INTEGER NOT NULL,
    score REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL, keypoints BYTEA NOT NULL,
    PRIMARY KEY (device, ts, seq, person));
CREATE INDEX IF NOT EXISTS people_ts ON people (ts);
"""
_SCHEMA_LOCK = 0x65646765  # advisory lock: workers starting together create the tables once


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore(Store):
    placeholder = "%s"

    def __init__(self, url: str, create: bool = True, connect_timeout_s: int = 10):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("PostgreSQL needs psycopg 3: pip install 'edge-sdk[fleet]'") from None
        self.url = redact_url(url)
        self._psycopg = psycopg
        self._connect_args = (url, connect_timeout_s)  # kept to reconnect after a lost connection
        self._connect()
        try:
            with self.db.transaction():
                if create:
                    self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        self.db.execute(statement)
                    self.db.execute("INSERT INTO edge_sdk_meta (key, value) VALUES ('schema', %s) "
                                    "ON CONFLICT DO NOTHING", (str(SCHEMA_VERSION),))
                row = self.db.execute("SELECT value FROM edge_sdk_meta WHERE key = 'schema'").fetchone()
        except psycopg.Error as exc:
            self.db.close()
            raise StoreError("PostgreSQL at {} has no usable pose tables: {}".format(self.url, _first_line(exc))) \
                from None
        if row is None or row[0] != str(SCHEMA_VERSION):
            self.db.close()
            raise StoreError("PostgreSQL at {} holds pose schema {} but this edge-sdk writes schema {}".format(
                self.url, row and row[0], SCHEMA_VERSION))
        self._frames_sql = self._sql_insert("frames", FRAME_COLUMNS)
        self._people_sql = self._sql_insert("people", PEOPLE_COLUMNS)

    def _connect(self) -> None:
        url, timeout = self._connect_args
        try:
            self.db = self._psycopg.connect(url, connect_timeout=timeout)
        except self._psycopg.Error as exc:
            raise StoreError("cannot connect to PostgreSQL at {}: {}".format(self.url, _first_line(exc))) from None

    def _insert(self, frames: list[tuple], people: list[tuple]) -> int:
        if self.db.closed or self.db.broken:
            self._connect()
        try:
            with self.db.transaction():
                with self.db.cursor() as cur:
                    cur.executemany(self._frames_sql, frames)
                    stored = cur.rowcount  # psycopg >= 3.1: the sum over the batch
                    if people:
                        cur.executemany(self._people_sql, people)
        except self._psycopg.OperationalError as exc:  # server gone, connection lost: reconnect next time
            raise StoreError("PostgreSQL at {}: {}".format(self.url, _first_line(exc))) from exc
        return stored

    def delete_older_than(self, ts: float) -> int:
        with self.db.transaction():
            removed = self.db.execute("DELETE FROM frames WHERE ts < %s", (ts,)).rowcount
            self.db.execute("DELETE FROM people WHERE ts < %s", (ts,))
        return removed

    def select(self, sql: str, params: list) -> list[tuple]:
        with self.db.transaction():
            return self.db.execute(sql.replace("?", "%s"), params).fetchall()

    def close(self) -> None:
        self.db.close()
