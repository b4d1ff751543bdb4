"""Issue #13 items 4-9 and #12 item 8 (output hygiene): the on-device runtime survives a full or read-only spill
disk, a broken frame, a signal while the broker is away, and never leaks a camera password or a NaN.

Full and read-only disks are real: small tmpfs mounts (``mount -t tmpfs -o size=8k`` / ``-o ro``), which needs
root; where mounting is not allowed these tests skip and say so.
"""

import json
import os
import stat
import time

import numpy as np
import pytest

from edge_sdk.runtime import messages
from edge_sdk.runtime.delivery_queue import DeliveryQueue
from edge_sdk.runtime.health import write_json_atomic
from edge_sdk.runtime.sources import Source
from edge_sdk.testing import make_oracle

SECRET = "hunter2-Secret"


def payload(i, size=400):
    return json.dumps({"seq": i, "pad": "x" * size}).encode()


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_spill_disk_fault_keeps_the_queue_working_in_order(tmpfs, fault, caplog):
    """Item 4: a full or read-only spill dir must not raise; the oldest are dropped, counted, logged once."""
    spill = tmpfs("spill", size="8k", readonly=(fault == "read-only"))
    queue = DeliveryQueue(max_messages=1000, memory_limit=10, spill_dir=str(spill), segment_size=5)
    n = 200
    with caplog.at_level("WARNING", logger="edge_sdk.mqtt"):
        for i in range(n):
            queue.put("edge-sdk/cam-01/poses", payload(i))
    assert queue.spill_errors > 0 and spill.name in queue.spill_error
    assert sum("cannot be used" in r.getMessage() for r in caplog.records) == 1  # said once
    out = []
    while True:
        item = queue.pop()
        if item is None:
            break
        out.append(json.loads(item[1])["seq"])
    assert out == sorted(out) and out[-1] == n - 1  # in order, the newest kept
    assert len(out) + queue.dropped == n  # every message either delivered or counted as dropped
    assert len(out) <= 10 + (8 * 1024) // 400 + 5  # memory bound plus what fit on the disk
    queue.close()
    assert not list(spill.glob("*.bin"))


def test_spill_disk_that_frees_up_again_is_used_again_without_reordering(tmpfs):
    spill = tmpfs("spill", size="8k")
    queue = DeliveryQueue(max_messages=1000, memory_limit=5, spill_dir=str(spill), segment_size=3)
    for i in range(60):
        queue.put("t", payload(i))
    popped = [json.loads(queue.pop()[1])["seq"] for _ in range(len(queue))]  # drained: the disk is free again
    for i in range(60, 80):
        queue.put("t", payload(i))
    popped += [json.loads(queue.pop()[1])["seq"] for _ in range(len(queue))]
    assert popped == sorted(popped) and popped[-1] == 79 and len(popped) + queue.dropped == 80
    queue.close()


def test_health_file_never_writes_through_a_planted_link(tmp_path):
    """Item 7: the old temp name was predictable ({path}.tmp{pid}); a link planted there redirected the write."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    health = tmp_path / "health.json"
    os.symlink(str(victim), "{}.tmp{}".format(health, os.getpid()))
    write_json_atomic(str(health), {"status": "running", "fps": float("nan")})
    assert victim.read_text() == "precious"
    assert json.loads(health.read_text()) == {"status": "running", "fps": None}  # no NaN in the file either
    assert stat.S_IMODE(health.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim.txt", "health.json",
                                                                 "health.json.tmp{}".format(os.getpid())])


def test_redact_url_and_text():
    from edge_sdk.runtime.redact import redact_text, redact_url  # new in this change: imported here, so that
    # the other tests of this file run (and fail for their own reasons) on a tree without it

    assert redact_url("rtsp://admin:{}@10.0.0.5:554/live".format(SECRET)) == "rtsp://admin:***@10.0.0.5:554/live"
    text = "rtspsrc location=rtsp://cam/x user-id=admin user-pw={} ! appsink; http://h/x?token={}&a=1".format(
        SECRET, SECRET)
    assert SECRET not in redact_text(text) and "user-id=admin" in redact_text(text)
    assert redact_url("rtsp://cam.local/stream") == "rtsp://cam.local/stream"


def test_camera_password_never_reaches_stderr_or_the_health_file(tmp_path, edge_sdk_cli):
    """Item 6: a stream that cannot be opened reports its URL without the password, in every place."""
    case = make_oracle(tmp_path, num_frames=2, video=None)
    health = tmp_path / "health.json"
    url = "rtsp://admin:{}@127.0.0.1:9/stream".format(SECRET)
    proc = edge_sdk_cli("run", "--model", case.model_path, "--source", url, "--health-file", health, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "rtsp://admin:***@127.0.0.1:9/stream" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    document = health.read_text()
    assert json.loads(document)["status"] == "error" and SECRET not in document
    assert stat.S_IMODE(health.stat().st_mode) == 0o600


def test_no_nan_or_infinity_on_the_wire_and_keypoints_inside_the_frame():
    """#12 item 8: what a decoder returns is cleaned before it is published or saved."""
    kps = np.zeros((2, 17, 3))
    kps[:, :, 2] = 0.8
    kps[0, 0] = [np.nan, 5, 0.9]
    kps[0, 1] = [np.inf, -np.inf, 0.9]
    kps[1, 2] = [900.0, -12.0, 0.7]  # outside a 640x480 frame
    msg = messages.build_pose_message("cam-01", 1, float("nan"), 640, 480, "cam",
                                      messages.people_to_json(kps, [np.nan, 0.5]), {"infer": float("inf")})
    for data in (messages.encode_json(msg), messages.encode_json(dict(msg, ts=float("inf")))):
        text = data.decode()
        assert "NaN" not in text and "Infinity" not in text
        back = json.loads(text)
        points = np.array([p["keypoints"] for p in back["people"]])
        assert np.isfinite(points).all()
        assert (points[..., 0] <= 639).all() and (points[..., 1] <= 479).all() and (points[..., :2] >= 0).all()
    assert msg["people"][0]["keypoints"][0] == [0.0, 0.0, 0.0]  # non-finite: joint not found
    assert msg["people"][1]["keypoints"][2] == [639.0, 0.0, 0.7]
    assert msg["people"][0]["score"] == 0.0 and msg["latency_ms"]["infer"] == 0.0
    compact = messages.decode_compact(messages.encode_compact(dict(msg, ts=float("nan"))))
    assert np.isfinite(compact["ts"]) and all(np.isfinite(v) for v in compact["latency_ms"].values())


class _LiveFramesWithOneBroken(Source):
    """A live source (like a camera) that delivers one unusable 1x8000 frame among good ones."""

    live = True
    name = "camera-test"

    def __init__(self, good, n=8, broken_at=3):
        self.good, self.n, self.broken_at = good, n, broken_at

    def frames(self):
        for i in range(self.n):
            time.sleep(0.1)  # a camera's pace: the pipeline keeps up and drops nothing
            yield i, (np.zeros((1, 8000, 3), np.uint8) if i == self.broken_at else self.good.copy())


@pytest.mark.parametrize("sequential", [False, True])
def test_unusable_frame_is_skipped_and_counted_not_fatal(tmp_path, sequential, caplog):
    """Item 9: a 1x8000 frame used to abort the run with an OpenCV assertion."""
    from edge_sdk.runtime.pipeline import run_pipeline
    from edge_sdk.runtime.sinks import MemorySink
    from edge_sdk.testing import oracle_frame

    case = make_oracle(tmp_path, num_frames=2, video=None)
    sink = MemorySink()
    good = oracle_frame(0, case.width, case.height)
    with caplog.at_level("WARNING", logger="edge_sdk.pipeline"):
        stats = run_pipeline(model=str(case.model_path), source=_LiveFramesWithOneBroken(good), sinks=[sink],
                             sequential=sequential, handle_signals=False, health_file=str(tmp_path / "h.json"))
    assert stats.error is None and stats.unusable == 1
    assert stats.drops == 0 and len(sink.messages) == 7 and 3 not in [m["seq"] for m in sink.messages]
    assert json.loads((tmp_path / "h.json").read_text())["unusable"] == 1
    assert "8000x1 frame" in caplog.text  # width x height

