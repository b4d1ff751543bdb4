"""A throwaway Mosquitto on a free loopback port, for the benchmarks that go through a real broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time


def start_mosquitto(workdir: str, settings: str = "") -> tuple[subprocess.Popen, int]:
    """Start Mosquitto with ``settings`` (extra mosquitto.conf lines) in ``workdir``; (process, port)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n{}".format(port, settings))
    proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")
