"""The update lock: work that must not be cut by an update (writing the MQTT spill queue) holds it, and the
flash agent waits for it, with a timeout, before it stops the runtime.

A file next to the health file (``update.lock``, the agent's ``<root>/run/update.lock``) locked with flock:
the runtime takes a shared lock around each such piece of work, the agent an exclusive one, so the agent
waits until every piece in progress is done. The runtime never waits: if the agent already holds the lock
(an update is under way) or the file cannot be opened, the work goes on unlocked -- video must not stall
because of an update, and the agent stops the runtime with SIGTERM, which it handles cleanly anyway.
"""

import os

LOCK_NAME = "update.lock"


def lock_path_for(health_file: str) -> str:
    """Where the agent looks for the lock: beside the health file it gave the runtime."""
    return os.path.join(os.path.dirname(os.path.abspath(health_file)), LOCK_NAME)


class UpdateLock(object):
    """``with lock:`` holds a shared flock on ``path`` for the block (reusable, not re-entrant)."""

    def __init__(self, path):
        self.path = str(path)
        self._fd = None
        self.held = 0  # blocks that ran under the lock (for tests and the curious)

    def __enter__(self):
        import fcntl

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return self
        self._fd = fd
        self.held += 1
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        return False
