"""Issue #13 items 1-3: no message a device can publish stops `edge-sdk subscribe` or `edge_sdk.subscribe()`,
writes outside the render folder, or speaks for another device. Real Mosquitto, real CLI processes."""

import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import edge_sdk
from edge_sdk.runtime import messages
from edge_sdk.runtime.mqtt import new_client
from tests.conftest import REPO


def pose(device, seq, w=160, h=120):
    kps = np.zeros((1, 17, 3))
    kps[0, :, 0] = 20 + np.arange(17) * 2
    kps[0, :, 1] = 10 + np.arange(17) * 6
    kps[0, :, 2] = 0.9
    return messages.build_pose_message(device, seq, 1000.0 + seq, w, h, "cam", messages.people_to_json(
        kps, np.ones(1)), {"infer": 2.0, "total": 3.0})


def with_people(keypoints):
    return json.dumps(dict(pose("cam-01", 0), people=[{"score": 1.0, "keypoints": keypoints}])).encode()


def compact_with_nan_ts():
    """A compact payload whose ts is NaN (our encoder writes 0 for it, so the bytes are patched: offset 8)."""
    data = bytearray(messages.encode_compact(pose("cam-01", 0)))
    data[8:16] = struct.pack("<d", float("nan"))
    return bytes(data)


# (name, topic, payload): every one of these stopped a subscriber or its --render on main
HOSTILE = [
    ("keypoints are plain numbers", "edge-sdk/cam-01/poses", with_people(list(range(17)))),
    ("latency_ms is a list", "edge-sdk/cam-01/poses", json.dumps(dict(pose("cam-01", 0), latency_ms=[1, 2])).encode()),
    ("latency total is text", "edge-sdk/cam-01/poses",
     json.dumps(dict(pose("cam-01", 0), latency_ms={"total": "slow"})).encode()),
    ("deeply nested", "edge-sdk/cam-01/poses", b"[" * 200000 + b"]" * 200000),
    ("NaN keypoints", "edge-sdk/cam-01/poses", with_people([[float("nan"), 1.0, 1.0]] * 17)),
    ("string keypoints", "edge-sdk/cam-01/poses", with_people([["10", "20", "0.9"]] * 17)),
    ("100000x100000 frame", "edge-sdk/cam-01/poses",
     json.dumps(dict(pose("cam-01", 0), frame={"w": 100000, "h": 100000, "source": "x"})).encode()),
    ("a 100000-digit seq", "edge-sdk/cam-01/poses",
     b'{"v":1,"device":"cam-01","seq":' + b"7" * 100000 + b',"ts":1,"frame":{"w":1,"h":1},"people":[]}'),
    ("path traversal device", "edge-sdk/cam-01/poses", messages.encode_json(dict(pose("cam-01", 0), device="../../x"))),
    ("another device's name", "edge-sdk/cam-01/poses", messages.encode_json(pose("cam-02", 0))),
    ("compact with NaN ts", "edge-sdk/cam-01/poses", compact_with_nan_ts()),
    ("metrics drops Infinity", "edge-sdk/cam-01/metrics", b'{"drops": Infinity, "fps": 30}'),
    ("metrics drops NaN", "edge-sdk/cam-01/metrics", b'{"drops": NaN}'),
    ("metrics nested list", "edge-sdk/cam-01/metrics", b'{"latency_ms": {"total": [1, 2]}}'),
    ("status state is an object", "edge-sdk/cam-01/status", b'{"state": {"a": 1}}'),
    ("terminal escape in source", "edge-sdk/cam-01/poses",
     json.dumps(dict(pose("cam-01", 0), frame={"w": 160, "h": 120, "source": "\x1b[2J\x1b]0;pwned\x07"})).encode()),
]
CAUSES = ["keypoint 0 must be [x, y, score]", "latency_ms must be an object", "must be a number", "nested deeper",
          "NaN", "must be a number, got str", "frame.w = 100000", "digits", "not a valid device id",
          "speaks only for itself", "ts is not finite", "Infinity", "NaN", "must be a number, string", "status.state",
          "control characters"]


def raw_client(broker):
    client = new_client("")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_all(raw, payloads):
    for topic, payload in payloads:
        raw.publish(topic, payload, qos=1).wait_for_publish(5)


def test_library_consumer_skips_every_hostile_message_and_counts_it_per_device(mosquitto, caplog):
    sub = edge_sdk.subscribe(mosquitto.url, count=2, timeout=20)
    raw = raw_client(mosquitto)
    try:
        publish_all(raw, [(topic, payload) for _, topic, payload in HOSTILE])
        publish_all(raw, [("edge-sdk/cam-01/poses", messages.encode_json(pose("cam-01", 1))),
                          ("edge-sdk/cam-01/poses", messages.encode_compact(pose("cam-01", 2)))])
        got = [(m["device"], m["seq"]) for m in sub]
    finally:
        raw.loop_stop()
    assert got == [("cam-01", 1), ("cam-01", 2)]
    assert sub.skipped == len(HOSTILE)
    assert sub.devices["cam-01"].bad == len(HOSTILE)  # counted against the topic's device
    assert "cam-02" not in sub.devices and sub.devices["cam-01"].metrics == {}
    for cause in CAUSES:
        assert cause in caplog.text, cause


def test_a_device_cannot_speak_for_another(mosquitto):
    """Item 3: the topic is the identity; a payload naming another device is rejected and counted."""
    sub = edge_sdk.subscribe(mosquitto.url, count=1, timeout=20)
    raw = raw_client(mosquitto)
    try:
        publish_all(raw, [("edge-sdk/cam-evil/poses", messages.encode_json(pose("cam-01", 5))),
                          ("edge-sdk/cam-evil/metrics", b'{"device": "cam-01", "drops": 999}'),
                          ("edge-sdk/cam-evil/poses", messages.encode_compact(pose("cam-01", 6))),
                          ("edge-sdk/cam-01/poses", messages.encode_json(pose("cam-01", 7)))])
        got = [(m["device"], m["seq"]) for m in sub]
    finally:
        raw.loop_stop()
    assert got == [("cam-01", 7)]
    assert sub.devices["cam-evil"].bad == 3 and sub.devices["cam-evil"].received == 0
    assert sub.devices["cam-01"].metrics == {} and sub.devices["cam-01"].bad == 0


@pytest.mark.parametrize("mode", ["json", "table", "lines", "save", "render"])
def test_cli_survives_every_hostile_message_in_every_mode(mosquitto, tmp_path, mode):
    work = tmp_path / "work"
    work.mkdir()
    extra = {"json": ["--json"], "table": ["--table"], "lines": [], "save": ["--save", str(work / "p.jsonl")],
             "render": ["--render", str(work / "overlays")]}[mode]
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "subscribe", "--mqtt", mosquitto.url, "--count", "2",
                             "--timeout", "40"] + extra, cwd=str(work), stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stderr=subprocess.PIPE, text=True)
    raw = raw_client(mosquitto)
    seq = 0
    try:  # hostile batch, then one good message, until the subscriber (starting up) has seen two good ones:
        while proc.poll() is None and seq < 200:  # the second is always after a whole hostile batch
            publish_all(raw, [(topic, payload) for _, topic, payload in HOSTILE])
            publish_all(raw, [("edge-sdk/cam-01/poses", messages.encode_json(pose("cam-01", seq)))])
            seq += 1
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        raw.loop_stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "skipped a message" in err
    for cause in CAUSES:
        assert cause in err, cause
    if mode == "json":
        assert len(out.splitlines()) == 2 and all(json.loads(line)["device"] == "cam-01" for line in out.splitlines())
    else:  # the final table names the bad ones against their device
        row = [line for line in out.splitlines() if line.startswith("cam-01")][-1]
        assert int(row.split()[6]) >= len(HOSTILE)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                     if p.is_file() and p.parts[len(tmp_path.parts)] != "broker")  # everything but the broker's
    if mode == "render":  # only PNGs of good messages, inside the render folder, at the frame's size
        import cv2

        assert written and all(p.startswith("work/overlays/cam-01/") for p in written), written
        assert cv2.imread(str(tmp_path / written[0])).shape == (120, 160, 3)
    if mode == "save":
        assert written == ["work/p.jsonl"]
        assert [json.loads(line)["device"] for line in (work / "p.jsonl").read_text().splitlines()] == ["cam-01"] * 2


def test_render_bounds_the_canvas_and_skips_non_finite_keypoints(tmp_path):
    """The overlay writer itself, fed messages that skipped the check (an application's own dicts)."""
    from edge_sdk.overlay import MAX_CANVAS_SIDE, OverlayWriter

    writer = OverlayWriter(str(tmp_path / "out"))
    big = dict(pose("cam-01", 0), frame={"w": 60000, "h": 60000, "source": "x"})
    big["people"] = [{"score": 1.0, "keypoints": [[30000.0, 30000.0, 0.9]] * 16 + [[float("nan"), 1e300, 1.0]]}]
    path = writer.write(big)
    import cv2

    assert cv2.imread(path).shape == (MAX_CANVAS_SIDE, MAX_CANVAS_SIDE, 3)
    with pytest.raises(edge_sdk.errors.ConfigError):
        writer.write(dict(pose("cam-01", 1), device="../../x"))
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["000000.png"]
