"""The health file: a small JSON document the runtime rewrites every second (``--health-file PATH``).

``{"status": "running" | "stopped" | "error", "ts": float, "frames": int, "fps": float, "model": str,
"pid": int, ...}``; ``edge-sdk flash`` and service monitors read it as the device's health signal: a
``ts`` older than a few seconds means the runtime hangs. Each write is atomic (temporary file + rename),
so a reader never sees half a document.
"""

import json
import os
import threading
import time
from typing import Any


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file in the same folder and a rename."""
    tmp = "{}.tmp{}".format(path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
    os.replace(tmp, path)


class HealthFile(object):
    """Rewrites ``path`` every ``interval`` seconds from ``snapshot()`` (a dict of frames, fps, ...)."""

    def __init__(self, path, model, snapshot, interval=1.0):
        self.path = str(path)
        self.model = str(model)
        self.snapshot = snapshot
        self.interval = float(interval)
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
            data["error"] = str(error)
        return data

    def write(self, status, error=None):
        write_json_atomic(self.path, self.document(status, error))

    def start(self):
        self.write("running")
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.write("running")
            except OSError:  # a full disk must not stop the video; the stale ts says something is wrong
                pass

    def stop(self, error=None):
        """Stop the writer and leave a final ``stopped`` (or ``error``) document."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.write("error" if error is not None else "stopped", error)
