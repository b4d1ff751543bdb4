"""The on-device runtime, run for real on Python 3.6 (JetPack 4.6): numpy 1.19, OpenCV 4.6, paho-mqtt 1.6
(the 1.x client API) and onnxruntime 1.10, from a generated video to a real Mosquitto.

vermin checks the syntax of every runtime module (test_runtime_rules.py); this runs them. Needs a Python 3.6
with those packages ($EDGE_SDK_PY36, or `.venv36` made by scripts/test.sh where a Python 3.6 exists).
"""

import subprocess

import pytest
from conftest import REPO, python36

from edge_sdk.subscriber import subscribe
from edge_sdk.testing import make_oracle
from tests.test_mqtt_e2e import assert_keypoints

PY36 = python36("cv2", "onnxruntime", "paho.mqtt.client")
pytestmark = pytest.mark.skipif(PY36 is None, reason="no Python 3.6 with cv2, onnxruntime, paho-mqtt "
                                                     "(set EDGE_SDK_PY36)")


def test_python36_runtime_publishes_every_frame_over_mqtt(tmp_path, mosquitto):
    version = subprocess.run([PY36, "-c", "import paho.mqtt; print(paho.mqtt.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    oracle = make_oracle(tmp_path, num_frames=30, width=160, height=120, people=2)
    sub = subscribe(mosquitto.url, topic="edge-sdk/jetpack46/poses", count=oracle.num_frames, timeout=90)
    proc = subprocess.run([PY36, "-m", "edge_sdk", "run", "--model", str(oracle.model_path), "--source",
                           str(oracle.video_path), "--mqtt", mosquitto.url, "--device-id", "jetpack46", "--qos", "1",
                           "--save", str(tmp_path / "poses.jsonl")], cwd=str(REPO), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    received = list(sub)
    assert [m["seq"] for m in received] == list(range(oracle.num_frames)), "paho-mqtt {}".format(version)
    for message in received:
        assert_keypoints(message, oracle.expected[message["seq"]])
    assert len((tmp_path / "poses.jsonl").read_text().splitlines()) == oracle.num_frames


def test_python36_cli_starts_and_explains_host_commands():
    proc = subprocess.run([PY36, "-m", "edge_sdk", "train", "--model", "tinyvgg"], cwd=str(REPO),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "host command" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([PY36, "-m", "edge_sdk", "doctor"], cwd=str(REPO), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout.lower()
