"""A real, throwaway PostgreSQL server for tests: initdb + pg_ctl from /usr/lib/postgresql/*/bin on a free port.

PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to the ``postgres`` system user
(``runuser``); its folder is a fresh temp dir that user owns, removed at the end. Trust authentication on
127.0.0.1 only.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import free_port, wait_for_port


def postgres_bin():
    """The newest PostgreSQL server bin folder, or None when the server is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self):
        self.bin = postgres_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="edge-sdk-pg-"))
        self.user_prefix = []
        if os.getuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.user_prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"

    def _run(self, *args):
        return subprocess.run(self.user_prefix + [str(a) for a in args], check=True, capture_output=True,
                              text=True, timeout=60)

    def start(self):
        self._run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8")
        options = "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off".format(self.port, self.dir)
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "log", "-w", "start")
        if not wait_for_port("127.0.0.1", self.port):
            raise RuntimeError("PostgreSQL did not start:\n" + (self.dir / "log").read_text())
        return self

    def url(self, database="postgres"):
        return "postgresql://postgres@127.0.0.1:{}/{}".format(self.port, database)

    def create_database(self, name):
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute("CREATE DATABASE {}".format(name))
        return self.url(name)

    def stop(self):
        try:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
