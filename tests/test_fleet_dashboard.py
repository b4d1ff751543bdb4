"""The fleet dashboard in a real headless Chromium: skeletons drawn from published messages, a camera going
offline through its MQTT last will; the server's HTTP/WebSocket edges without a browser."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from chromium import Browser, chromium_binary
from conftest import REPO, free_port, stop_process

from edge_sdk.fleet.dashboard import FleetState
from edge_sdk.runtime import messages

CANVAS_BG = (20, 24, 32)
PERSON_0 = (0, 255, 102)
OFFLINE_RED = (200, 30, 30)


def start_dashboard(broker):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "dashboard", "--mqtt", broker.url, "--port",
                             str(port), "--push-interval", "0.05"], cwd=str(REPO), stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "dashboard: http://" in line, line + proc.stderr.read()
    return proc, "http://127.0.0.1:{}/".format(port)


def mqtt_client(broker, will_device=None):
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    if will_device:
        client.will_set("edge-sdk/{}/status".format(will_device), json.dumps({"state": "offline"}), 1, True)
    client.connect(broker.host, broker.port)
    return client


def pump(client, seconds=0.3):
    end = time.time() + seconds
    while time.time() < end:
        client.loop(0.05)


def near(image, colour, tolerance=40):
    return np.all(np.abs(image.astype(int) - np.array(colour)) <= tolerance, axis=2)


def canvas_box(image, column):
    """(x0, y0, x1, y1) of the canvas in card ``column`` (0 = leftmost), from its background colour."""
    mask = near(image, CANVAS_BG, 2)
    cols = np.flatnonzero(mask.sum(axis=0) > 100)
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    xs = runs[column]
    rows = np.flatnonzero(mask[:, xs[0]:xs[-1] + 1].sum(axis=1) > 100)
    return xs[0], rows[0], xs[-1] + 1, rows[-1] + 1


@pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (apt-get install chromium)")
def test_page_draws_skeletons_live_and_shows_a_camera_going_offline(mosquitto, tmp_path):
    dashboard, url = start_dashboard(mosquitto)
    cam1 = mqtt_client(mosquitto)
    cam2 = mqtt_client(mosquitto, will_device="cam-02")
    for client, device in ((cam1, "cam-01"), (cam2, "cam-02")):
        client.publish("edge-sdk/{}/status".format(device), json.dumps({"state": "online"}), 1, True)
        pump(client)
    browser = Browser(tmp_path)
    try:
        browser.open(url)
        browser.wait_for("[...document.querySelectorAll('.badge.online')].length == 2")
        before = browser.screenshot()
        box = canvas_box(before, 0)
        x0, y0, x1, y1 = box
        assert (x1 - x0, y1 - y0) == (320, 240)
        assert not near(before[y0:y1, x0:x1], PERSON_0).any()

        # one person standing in the left quarter of a 640x480 frame: the canvas shows it at half scale
        kps = np.zeros((1, 17, 3))
        kps[0, :, 0] = np.linspace(120, 200, 17)
        kps[0, :, 1] = np.linspace(100, 420, 17)
        kps[0, :, 2] = 0.9
        msg = messages.build_pose_message("cam-01", 7, time.time(), 640, 480, "cam",
                                          messages.people_to_json(kps, [0.9]), {"total": 12.0})
        cam1.publish("edge-sdk/cam-01/poses", messages.encode_json(msg), 1)
        pump(cam1)
        browser.wait_for("document.querySelector('.card .stats').textContent.includes('1 people')")
        time.sleep(0.2)
        after = browser.screenshot()
        person = near(after[y0:y1, x0:x1], PERSON_0)
        assert person.sum() > 200
        ys, xs = np.nonzero(person)
        assert 55 <= xs.min() and xs.max() <= 105, (xs.min(), xs.max())  # x 120..200 px -> 60..100 on canvas
        assert 45 <= ys.min() and ys.max() <= 215, (ys.min(), ys.max())  # y 100..420 px -> 50..210
        assert "12.0 ms" in browser.evaluate("document.querySelector('.card .stats').textContent")

        # cam-02 vanishes without a goodbye: the broker publishes its last will, the page turns it offline
        assert not near(after, OFFLINE_RED, 10).any()
        cam2.socket().close()
        browser.wait_for("document.querySelectorAll('.badge')[1].textContent == 'offline'")
        time.sleep(0.2)
        gone = browser.screenshot()
        red = near(gone, OFFLINE_RED, 10)
        assert red.sum() > 100
        assert np.flatnonzero(red.any(axis=0)).min() > canvas_box(gone, 1)[0]  # in cam-02's card
        assert near(gone[y0:y1, x0:x1], PERSON_0).sum() == person.sum()  # cam-01 still drawn
    finally:
        browser.close()
        cam1.disconnect()
        stop_process(dashboard)


def test_server_edges_without_a_browser(mosquitto):
    dashboard, url = start_dashboard(mosquitto)
    try:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert '<script src="/dashboard.js">' in page and "http" not in page.split("<script")[1].split(">")[0]
        script = urllib.request.urlopen(url + "dashboard.js", timeout=10).read().decode()
        assert "new WebSocket" in script and "https://" not in script
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "../etc/passwd", timeout=10)
        assert err.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=10)
        assert err.value.code == 405
        host, port = url[len("http://"):-1].split(":")
        key = base64.b64encode(os.urandom(16)).decode()
        for origin, expected in (("http://evil.example", b" 403 "), ("http://{}:{}".format(host, port), b" 101 ")):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall("GET /ws HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nOrigin: {}\r\n\r\n".format(
                              host, port, key, origin).encode())
                assert expected in s.recv(200).split(b"\r\n")[0]
    finally:
        stop_process(dashboard)


def test_fleet_state_counts_bad_messages_and_refuses_impostors():
    state = FleetState(max_devices=2)
    good = messages.encode_json(messages.build_pose_message("cam-01", 1, 1.0, 640, 480, "x", [], {}))
    state.on_payload("edge-sdk/cam-01/poses", good, now=1.0)
    state.on_payload("edge-sdk/cam-09/poses", good, now=1.0)  # cam-01's message on cam-09's topic
    state.on_payload("edge-sdk/cam-01/poses", b"\xff\xfe", now=1.0)
    state.on_payload("edge-sdk/cam-01/status", b"[not json", now=1.0)
    state.on_payload("edge-sdk/cam-02/status", b'{"state": "offline"}', now=1.0)
    state.on_payload("edge-sdk/cam-03/status", b'{"state": "online"}', now=1.0)  # over max_devices
    version, devices = state.snapshot()
    assert [d["device"] for d in devices] == ["cam-01", "cam-02"] and state.bad == 3
    assert [d["state"] for d in devices] == ["unknown", "offline"]
    assert state.snapshot(since=version)[1] == []
