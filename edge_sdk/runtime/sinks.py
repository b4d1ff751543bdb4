"""Where pose messages go: ``write(message: dict)`` and ``close()``.

:class:`JsonlSink` (``--save poses.jsonl``: one message per line, flushed per line so a crash or a
power cut leaves only complete lines), :class:`MemorySink` (Python API and tests). The MQTT publisher
(``edge_sdk.runtime.mqtt.MqttPublisher``) has the same two methods.
"""

import os

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.messages import encode_json


class Sink(object):
    """A destination for pose messages (one dict per frame, in frame order)."""

    def write(self, message):
        raise NotImplementedError

    def close(self):
        pass


class JsonlSink(Sink):
    """Pose messages as JSON lines in a file (``-`` = stdout)."""

    def __init__(self, path):
        self.path = str(path)
        if self.path == "-":
            import sys

            self._file = sys.stdout
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ConfigError("cannot save poses to {}: folder {} does not exist".format(self.path, folder))
        try:
            self._file = open(self.path, "w")
        except OSError as exc:
            raise ConfigError("cannot save poses to {}: {}".format(self.path, exc.strerror or exc)) from exc

    def write(self, message):
        self._file.write(encode_json(message).decode("utf-8") + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None and self.path != "-":
            self._file.close()
        self._file = None


class MemorySink(Sink):
    """Keeps every message in ``messages`` (for the Python API and tests)."""

    def __init__(self):
        self.messages = []
        self.closed = False

    def write(self, message):
        self.messages.append(message)

    def close(self):
        self.closed = True


class CallbackSink(Sink):
    """Calls ``callback(message)`` for every message."""

    def __init__(self, callback):
        self.callback = callback

    def write(self, message):
        self.callback(message)
