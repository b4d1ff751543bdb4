"""Shared test fixtures: real components only (Mosquitto, the real photos and videos in tests/data)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"  # real photos, layouts, videos and a pretrained model; see tests/data/PROVENANCE.md
COCO_MINI = TEST_DATA / "coco_mini"
COCO_LAYOUTS = TEST_DATA / "coco_layouts" / "person_keypoints_val2014_fakekeypoints100_results.json"
VIDEOS = TEST_DATA / "video"
PRETRAINED_TFPOSE = TEST_DATA / "pretrained" / "tfpose_mobilenet_v2_small.pb"


def free_port(host="127.0.0.1"):
    """A TCP port on ``host`` (a loopback address) that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host, port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_binary():
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def stop_process(proc, timeout=5.0):
    """Terminate a server started by a test (kill it if it does not stop in time); returns None."""
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return None


class Mosquitto:
    """A real Mosquitto broker on a free loopback port, restartable on the same port.

    ``extra_config`` lines are appended to the generated configuration (TLS, ACLs, password files).
    """

    def __init__(self, workdir, port=None, extra_config="", listener_config=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_config = extra_config
        self.listener_config = listener_config
        self.proc = None
        self.log = self.workdir / "mosquitto.log"

    @property
    def url(self):
        return "mqtt://{}:{}".format(self.host, self.port)

    def write_config(self):
        conf = self.workdir / "mosquitto.conf"
        listener = self.listener_config or "listener {} {}\nallow_anonymous true\n".format(self.port, self.host)
        conf.write_text(listener + "persistence false\nlog_dest stderr\n" + self.extra_config + "\n")
        return conf

    def start(self):
        binary = mosquitto_binary()
        if binary is None:
            pytest.fail("mosquitto is not installed: run `bash .ci/run` (installs it with apt-get)")
        conf = self.write_config()
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        if not wait_for_port(self.host, self.port):
            self.stop()
            raise RuntimeError("mosquitto did not start; log:\n" + self.log.read_text())
        return self

    def stop(self):
        self.proc = stop_process(self.proc)

    def restart(self, down_seconds=0.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture
def mosquitto(tmp_path):
    """A running Mosquitto (anonymous, plain TCP) on a free 127.0.0.1 port; stopped after the test."""
    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Make brokers with custom config: ``mosquitto_factory(extra_config=..., listener_config=...)``."""
    brokers = []

    def make(**kwargs):
        broker = Mosquitto(tmp_path / "broker{}".format(len(brokers)), **kwargs)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def edge_sdk_cli():
    """Run ``python -m edge_sdk ARGS`` (works from any checkout, without an installed console script)."""

    def run(*args, timeout=300, check=False, **kwargs):
        proc = subprocess.run([sys.executable, "-m", "edge_sdk"] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, cwd=str(REPO), **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError("edge-sdk {} failed ({}):\n{}\n{}".format(
                " ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
        return proc

    return run


def python36(*modules):
    """A Python 3.6 interpreter (JetPack 4.6's Python) that imports numpy and ``modules``, or None.

    From $EDGE_SDK_PY36, else ``python3.6`` on PATH; `scripts/test.sh` makes one in `.venv36` when this
    machine has a Python 3.6 (pyenv), so the on-device code is run for real on the oldest supported Python.
    """
    imports = ", ".join(("sys", "numpy") + modules)
    for exe in (os.environ.get("EDGE_SDK_PY36"), shutil.which("python3.6")):
        if exe and subprocess.run([exe, "-c", "import {}; assert sys.version_info[:2] == (3, 6)".format(imports)],
                                  capture_output=True).returncode == 0:
            return exe
    return None


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size="8k", readonly=False)``: a real small (or read-only) file system, unmounted after."""
    mounts = []

    def mount(name, size="8k", readonly=False):
        path = tmp_path / name
        path.mkdir()
        options = "size={},mode=0777{}".format(size, ",ro" if readonly else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root): {}".format(proc.stderr.strip()))
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
