"""Issue 2 end to end: the oracle ONNX model through `edge-sdk run --mqtt` on a generated video, to a real
Mosquitto, to a subscriber -- every frame's message, in order, with the right keypoints, also when the broker
is restarted mid-stream at QoS 1."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.subscriber import subscribe
from edge_sdk.testing import make_oracle
from tests.conftest import REPO

TOLERANCE_PX = 1.5


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return make_oracle(tmp_path_factory.mktemp("oracle"), num_frames=60, width=160, height=120, people=2)


def run_cli(oracle, url, device, *extra):
    return subprocess.Popen([sys.executable, "-m", "edge_sdk", "run", "--model", str(oracle.model_path),
                             "--source", str(oracle.video_path), "--mqtt", url, "--device-id", device,
                             "--qos", "1", "--mqtt-metrics-interval", "0.5", "--quiet"] + list(extra),
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_keypoints(message, expected):
    """Every expected person is found (in any order) within TOLERANCE_PX on its present joints."""
    got = np.array([p["keypoints"] for p in message["people"]], np.float32)
    assert got.shape == expected.shape, "frame {}: {} people, expected {}".format(
        message["seq"], len(got), len(expected))
    for person in expected:
        present = person[:, 2] > 0
        errors = [np.abs(g[present, :2] - person[present, :2]).max() for g in got]
        best = got[int(np.argmin(errors))]
        assert min(errors) <= TOLERANCE_PX, "frame {}: off by {:.2f} px".format(message["seq"], min(errors))
        assert np.all(best[present, 2] > 0) and np.all(best[~present, 2] == 0)


def test_run_publishes_every_frame_in_order_with_the_right_keypoints(oracle, mosquitto):
    n = len(oracle.expected)
    sub = subscribe(mosquitto.url, topic="edge-sdk/cam-e2e/poses", count=n, timeout=60)
    proc = run_cli(oracle, mosquitto.url, "cam-e2e")
    received = list(sub)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [m["seq"] for m in received] == list(range(n))
    for message in received:
        assert message["device"] == "cam-e2e" and message["frame"]["w"] == 160
        assert {"infer", "decode", "total"} <= set(message["latency_ms"])
        assert_keypoints(message, oracle.expected[message["seq"]])
    device = sub.devices["cam-e2e"]
    assert device.duplicates == 0 and device.gaps == 0
    assert device.status["state"] == "online" and device.status["model"].endswith("oracle.onnx")


def test_broker_restarted_mid_stream_at_qos1_loses_nothing(oracle, mosquitto_factory, request):
    """The run is paused (SIGSTOP) after its first delivered message, the broker is stopped, the run goes on
    while the broker is down (the device queues), then the broker comes back: all frames arrive, once, in order.

    Broker persistence + a persistent subscriber session keep what the broker had accepted for the subscriber.
    """
    store = Path(tempfile.mkdtemp(prefix="edge-sdk-mosquitto-"))
    store.chmod(0o777)  # mosquitto started as root writes it as its own user
    request.addfinalizer(lambda: shutil.rmtree(store, ignore_errors=True))
    broker = mosquitto_factory(extra_config="persistence true\npersistence_location {}/\n".format(store)).start()
    n = len(oracle.expected)
    sub = subscribe(broker.url, topic="edge-sdk/cam-r/poses", client_id="e2e-dashboard", persistent_session=True,
                    idle_timeout=20, reconnect_delay=(0.2, 1))
    proc = run_cli(oracle, broker.url, "cam-r")
    received = []
    try:
        for message in sub:
            if not received:  # first message delivered: freeze the device mid-stream, take the broker away
                os.kill(proc.pid, signal.SIGSTOP)
                broker.stop()
                os.kill(proc.pid, signal.SIGCONT)  # it goes on producing while the broker is down
                time.sleep(1.5)
                broker.start()
            received.append(message)
            if len(received) == n:
                break
    finally:
        sub.close()
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "unreachable" in err  # the device did see the broker go away (and said so)
    assert [m["seq"] for m in received] == list(range(n))
    for message in received:
        assert_keypoints(message, oracle.expected[message["seq"]])


def test_run_with_an_unreachable_broker_is_a_clear_error(oracle):
    from tests.conftest import free_port

    port = free_port()
    proc = run_cli(oracle, "mqtt://127.0.0.1:{}".format(port), "cam-x", "--mqtt-connect-timeout", "2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "127.0.0.1:{}".format(port) in err and "running" in err and "Traceback" not in err
