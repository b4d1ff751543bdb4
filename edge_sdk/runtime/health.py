"""The health file: a small JSON document the runtime rewrites every second (``--health-file PATH``).

``{"status": "running" | "stopped" | "error", "ts": float, "frames": int, "fps": float, "model": str,
"pid": int, ...}``; ``edge-sdk flash`` and service monitors read it as the device's health signal: a
``ts`` older than a few seconds means the runtime hangs. Each write is atomic: a unique temporary file
created with ``O_EXCL`` (mode 0600) in the same folder, then a rename, so a reader never sees half a document
and nobody can make us write through a link planted at a predictable name. Secrets never get in: error texts
go through :func:`edge_sdk.runtime.redact.redact_text`.
"""

import json
import os
import tempfile
import threading
import time
from typing import Any

from edge_sdk.runtime.message_check import finite_or_none
from edge_sdk.runtime.redact import redact_text


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a unique temporary file (O_EXCL, 0600) in the same folder and a
    rename; the temporary file is removed if anything fails."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(finite_or_none(data), handle, sort_keys=True, allow_nan=False)
            handle.flush()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


class HealthFile(object):
    """Rewrites ``path`` every ``interval`` seconds from ``snapshot()`` (a dict of frames, fps, ...)."""

    def __init__(self, path, model, snapshot, interval=1.0):
        self.path = str(path)
        self.model = str(model)
        self.snapshot = snapshot
        self.interval = float(interval)
        self.status = "running"  # what the periodic writes say ("stopping" once a shutdown has begun)
        self._stop = threading.Event()
        self._thread = None
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            from edge_sdk.errors import ConfigError

            raise ConfigError("health file {}: folder {} does not exist".format(self.path, folder))

    def document(self, status, error=None):
        data = {"status": status, "ts": time.time(), "model": self.model, "pid": os.getpid()}
        data.update(self.snapshot())
        if error is not None:
            data["error"] = redact_text(str(error))
        return data

    def write(self, status, error=None):
        write_json_atomic(self.path, self.document(status, error))

    def start(self):
        self.write(self.status)
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.write(self.status)
            except OSError:  # a full disk must not stop the video; the stale ts says something is wrong
                pass

    def stop(self, error=None):
        """Stop the writer and leave a final ``stopped`` (or ``error``) document."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.status = "error" if error is not None else "stopped"
        try:
            self.write(self.status, error)
        except OSError:  # a full disk: the stale ts tells the reader; the run's own result still counts
            pass
