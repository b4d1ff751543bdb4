"""`edge-sdk subscribe` and ``edge_sdk.subscribe``: many devices, malformed input, dedupe, CLI outputs."""

import json
import logging
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import BrokerError
from edge_sdk.overlay import OverlayWriter
from edge_sdk.runtime import messages
from edge_sdk.runtime.mqtt import MqttPublisher, new_client
from edge_sdk.subscriber import format_table
from tests.conftest import REPO, free_port


def pose(device, seq, n_people=1, w=160, h=120):
    kps = np.zeros((n_people, 17, 3))
    for p in range(n_people):
        kps[p, :, 0] = 20 + 30 * p + np.arange(17) * 2
        kps[p, :, 1] = 10 + np.arange(17) * 6
        kps[p, :, 2] = 0.9
    return messages.build_pose_message(device, seq, 100.0 + seq, w, h, "cam", messages.people_to_json(
        kps, np.ones(n_people)), {"infer": 2.0, "decode": 1.0})


def raw_client(broker):
    client = new_client("")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_malformed_messages_are_skipped_and_the_subscriber_keeps_running(mosquitto, caplog):
    sub = edge_sdk.subscribe(mosquitto.url, count=3, timeout=10, max_payload=20000)
    raw = raw_client(mosquitto)
    bad = [b"not json at all", json.dumps(dict(pose("cam-01", 0), v=2)).encode(),
           json.dumps(dict(pose("cam-01", 0), pad="x" * 30000)).encode(),
           json.dumps(dict(pose("cam-01", 0), people=[{"keypoints": [[1, 2, 3]]}])).encode(),
           messages.encode_compact(pose("cam-01", 0))[:-5], b"\xff\xfe"]
    good = [pose("cam-01", 0), pose("cam-01", 0), pose("cam-01", 1), pose("cam-02", 0)]  # one QoS-1 style repeat
    with caplog.at_level(logging.WARNING, logger="edge_sdk.subscribe"):
        for payload in bad:
            raw.publish("edge-sdk/cam-01/poses", payload, qos=1)
        for i, msg in enumerate(good):
            encode = messages.encode_compact if i == 2 else messages.encode_json
            raw.publish("edge-sdk/{}/poses".format(msg["device"]), encode(msg), qos=1)
        got = [(m["device"], m["seq"]) for m in sub]
    raw.loop_stop()
    assert got == [("cam-01", 0), ("cam-01", 1), ("cam-02", 0)]
    assert sub.skipped == len(bad) and sub.duplicates == 1
    text = caplog.text
    assert "not valid JSON" in text and "version 2" in text and "limit" in text and "17 keypoints" in text
    assert "truncated" in text


def test_many_devices_table_counts_people_gaps_and_reported_drops(mosquitto):
    sub = edge_sdk.subscribe(mosquitto.url, count=27, timeout=10)
    pubs = [MqttPublisher(mosquitto.url, "cam-{}".format(i)).connect(5) for i in range(3)]
    pubs[1].publish_metrics({"fps": 30.0, "dropped_frames": 4})  # on its own topic, before cam-1's poses
    for i, pub in enumerate(pubs):
        for seq in range(10):
            if i == 2 and seq in (4, 5, 6):
                continue  # cam-2 lost three frames on the way
            pub.write(pose(pub.device_id, seq, n_people=i + 1))
    for pub in pubs:
        pub.flush(5)
    received = list(sub)
    for pub in pubs:
        pub.close()
    assert len(received) == 27
    rows = {r["device"]: r for r in sub.table_rows()}
    assert sorted(rows) == ["cam-0", "cam-1", "cam-2"]
    assert [rows[d]["people"] for d in sorted(rows)] == [1, 2, 3]
    assert rows["cam-2"]["drops"] == 3 and rows["cam-0"]["drops"] == 0
    assert rows["cam-0"]["latency_ms"] == pytest.approx(3.0)
    assert rows["cam-1"]["state"] == "online" and rows["cam-1"]["drops"] == 4  # reported in its metrics
    table = format_table(sub.table_rows())
    assert "cam-2" in table.splitlines()[3] and "latency" in table.splitlines()[0]


def test_cli_json_lines_save_and_render(mosquitto, tmp_path):
    save, render = tmp_path / "poses.jsonl", tmp_path / "overlays"
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "subscribe", "--mqtt", mosquitto.url, "--json",
                             "--count", "3", "--timeout", "30", "--save", str(save), "--render", str(render)],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = MqttPublisher(mosquitto.url, "cam-01").connect(5)
    seq = 0
    while proc.poll() is None and seq < 300:  # until the subscriber (starting up) has seen three
        pub.write(pose("cam-01", seq, n_people=2))
        seq += 1
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30)
    pub.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and [m["seq"] for m in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + 3))
    assert lines[0]["people"] == pose("cam-01", 0, n_people=2)["people"]
    assert [json.loads(line) for line in save.read_text().splitlines()] == lines
    pngs = sorted((render / "cam-01").glob("*.png"))
    assert len(pngs) == 3
    image = cv2.imread(str(pngs[0]))
    assert image.shape == (120, 160, 3)
    kp = lines[0]["people"][1]["keypoints"][8]  # a joint of the second person is drawn where it is
    assert image[int(kp[1]) - 2:int(kp[1]) + 3, int(kp[0]) - 2:int(kp[0]) + 3].max() > 200
    assert image[110:, 150:].max() == 0  # and the canvas is blank elsewhere


def test_render_to_video_on_given_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / "{:03d}.png".format(i)), np.full((120, 160, 3), 40 * (i + 1), np.uint8))
    writer = OverlayWriter(str(tmp_path / "out.avi"), frames=str(frames))
    for seq in range(3):
        writer.write(pose("cam-01", seq))
    writer.write(pose("cam-02", 0))
    writer.close()
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    count = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert abs(int(np.median(image)) - 40 * (count + 1)) < 8  # drawn on the given frame, not a blank one
        count += 1
    assert count == 3 and (tmp_path / "out-cam-02.avi").exists()


def test_unreachable_broker_is_a_clear_error():
    port = free_port()
    with pytest.raises(BrokerError, match="127.0.0.1:{}.*running".format(port)):
        edge_sdk.subscribe("mqtt://127.0.0.1:{}".format(port), connect_timeout=2)


def test_import_edge_sdk_stays_lean():
    code = "import sys, edge_sdk; print(any(m.startswith(('paho', 'numpy')) for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def test_watch_prints_human_lines_and_a_final_table(mosquitto):
    import io

    from edge_sdk.subscriber import watch

    out = io.StringIO()
    pub = MqttPublisher(mosquitto.url, "cam-07").connect(5)
    done = []

    def publish_until_done():
        seq = 0
        while not done and seq < 200:
            pub.write(pose("cam-07", seq, n_people=2))
            seq += 1
            time.sleep(0.05)

    import threading

    feeder = threading.Thread(target=publish_until_done)
    feeder.start()
    try:
        sub = watch(mosquitto.url, out=out, count=3, timeout=20)
    finally:
        done.append(True)
        feeder.join()
        pub.close()
    lines = out.getvalue().splitlines()
    assert sub.yielded == 3
    assert all(line.startswith("cam-07 #") and "2 people" in line for line in lines[:3])
    assert lines[3].split()[0] == "device" and lines[4].split()[:1] == ["cam-07"]


def test_cli_errors_are_clear(tmp_path):
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "edge_sdk", "subscribe", "--mqtt", "mqtt://127.0.0.1:{}".format(port),
                           "--count", "1"], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "127.0.0.1:{}".format(port) in proc.stderr and "Traceback" not in proc.stderr
