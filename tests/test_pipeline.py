"""The runtime pipeline end to end on real ONNX Runtime, real videos and the oracle model.

Until the PAF decoder lands, ``tiny_decode`` below (test-only) decodes the single person of an oracle
frame: per-part argmax with an exact log-parabola sub-cell fit of the Gaussian peak.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edge_sdk.errors import ModelError, SourceError
from edge_sdk.runtime.backends.loader import load_backend
from edge_sdk.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_sdk.runtime.messages import validate_pose_message
from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.runtime.pipeline import STAGES, DropOldestQueue, Pipeline, run_pipeline
from edge_sdk.runtime.sinks import MemorySink
from edge_sdk.runtime.skeleton import NUM_PARTS, coco18_to_coco17, map_to_image
from edge_sdk.runtime.sources import SyntheticSource, open_source
from edge_sdk.testing import make_oracle, write_oracle_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE_PX = 1.0


def _refine(left, centre, right):
    left, centre, right = (np.log(max(v, 1e-12)) for v in (left, centre, right))
    denom = left - 2.0 * centre + right
    return 0.0 if denom >= 0 else 0.5 * (left - right) / denom


def tiny_decode(maps, letterbox, stride):
    """One person per frame: heatmaps argmax (or the first peak slot) per part -> COCO-17 frame pixels."""
    keypoints = np.zeros((NUM_PARTS, 3), np.float32)
    if "peaks" in maps:
        for part in range(NUM_PARTS):
            x, y, score = maps["peaks"][part, 0]
            if score > 0.5:
                keypoints[part] = (x, y, score)
    else:
        heatmaps = maps["heatmaps"]
        h, w = heatmaps.shape[1:]
        for part in range(NUM_PARTS):
            channel = heatmaps[part]
            y, x = np.unravel_index(int(channel.argmax()), channel.shape)
            if channel[y, x] < 0.5:
                continue
            dx = _refine(channel[y, x - 1], channel[y, x], channel[y, x + 1]) if 0 < x < w - 1 else 0.0
            dy = _refine(channel[y - 1, x], channel[y, x], channel[y + 1, x]) if 0 < y < h - 1 else 0.0
            keypoints[part] = (x + dx, y + dy, channel[y, x])
    present = keypoints[:, 2] > 0
    keypoints[present, :2] = letterbox.input_to_frame(map_to_image(keypoints[present, :2], stride))
    return coco18_to_coco17(keypoints)[None], np.ones(1, np.float32)


def assert_matches_oracle(message, expected17):
    validate_pose_message(message)
    assert len(message["people"]) == 1
    got = np.array(message["people"][0]["keypoints"], np.float32)
    want = expected17[0]
    present = want[:, 2] > 0
    assert np.all(got[~present, 2] == 0), "joints missing in the oracle must have score 0"
    assert np.all(got[present, 2] > 0.5)
    error = np.abs(got[present, :2] - want[present, :2]).max()
    assert error <= TOLERANCE_PX, "frame {}: keypoints off by {:.2f} px".format(message["seq"], error)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return make_oracle(tmp_path_factory.mktemp("oracle"), num_frames=24, people=1, video="oracle.avi")


def read_jsonl(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize("sequential", [False, True], ids=["pipelined", "sequential"])
def test_oracle_video_every_frame_in_order_with_right_keypoints(oracle, tmp_path, sequential):
    save = tmp_path / "poses.jsonl"
    health = tmp_path / "health.json"
    stats = run_pipeline(model=oracle.model_path, source=str(oracle.video_path), save=str(save), workers=3,
                         decoder=tiny_decode, sequential=sequential, health_file=str(health), device_id="cam-01",
                         handle_signals=False)
    messages = read_jsonl(save)
    assert [m["seq"] for m in messages] == list(range(oracle.num_frames))
    for message in messages:
        assert message["device"] == "cam-01"
        assert message["frame"] == {"w": 320, "h": 240, "source": "oracle.avi"}
        assert set(message["latency_ms"]) == set(STAGES)
        assert all(v >= 0 for v in message["latency_ms"].values())
        assert_matches_oracle(message, oracle.expected[message["seq"]])
    assert stats.frames == oracle.num_frames and stats.drops == 0 and stats.error is None
    assert stats.mode == ("sequential" if sequential else "pipelined")
    doc = json.loads(health.read_text())
    assert doc["status"] == "stopped" and doc["frames"] == oracle.num_frames and doc["pid"] == os.getpid()
    assert doc["model"] == "oracle"


@pytest.mark.parametrize("spec", [
    InputSpec(height=128, width=192, batch=2),
    InputSpec(height=96, width=160, layout="NHWC", dtype="uint8", color="BGR"),
], ids=["float-nchw-batch2", "uint8-nhwc-bgr"])
def test_image_folder_batched_and_rewritten_inputs(tmp_path, spec):
    case = make_oracle(tmp_path, num_frames=7, people=1, video=None, input_spec=spec)
    folder = write_oracle_images(tmp_path / "frames", 7, case.width, case.height)
    sink = MemorySink()
    stats = run_pipeline(model=case.model_path, source=str(folder), sinks=[sink], decoder=tiny_decode,
                         handle_signals=False)
    assert sink.closed and stats.frames == 7
    assert [m["seq"] for m in sink.messages] == list(range(7))
    for message in sink.messages:
        assert_matches_oracle(message, case.expected[message["seq"]])


def test_peaks_model(tmp_path):
    case = make_oracle(tmp_path, num_frames=5, people=1, outputs="peaks")
    sink = MemorySink()
    run_pipeline(model=case.model_path, source=str(case.video_path), sinks=[sink], decoder=tiny_decode,
                 handle_signals=False)
    assert len(sink.messages) == 5
    for message in sink.messages:
        assert_matches_oracle(message, case.expected[message["seq"]])


def test_thread_pool_results_leave_in_frame_order(oracle):
    """Early frames decode slowest, so workers finish out of order; messages must still be in order."""
    finished = []

    def slow_early_decode(maps, letterbox, stride):
        time.sleep(0.03 * max(0, 6 - len(finished)))
        result = tiny_decode(maps, letterbox, stride)
        finished.append(result)
        return result

    sink = MemorySink()
    backend = load_backend(model=oracle.model_path)
    source = SyntheticSource(width=320, height=240, frames=30)
    stats = Pipeline(backend, source, [sink], workers=4, decoder=slow_early_decode).run()
    assert stats.frames == 30
    assert [m["seq"] for m in sink.messages] == list(range(30))


def test_live_source_drops_oldest_with_a_slow_consumer(oracle):
    def slow_decode(maps, letterbox, stride):
        time.sleep(0.04)
        return tiny_decode(maps, letterbox, stride)

    sink = MemorySink()
    backend = load_backend(model=oracle.model_path)
    live = SyntheticSource(width=160, height=120, fps=200, frames=80, live=True)
    stats = Pipeline(backend, live, [sink], workers=1, decoder=slow_decode, queue_size=2).run()
    seqs = [m["seq"] for m in sink.messages]
    assert stats.captured == 80
    assert stats.drops > 0 and stats.frames + stats.drops == 80
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] == 79, "the newest frame must survive: the OLDEST waiting frames are dropped"
    assert len(seqs) < 80


def test_file_source_never_drops_with_a_slow_consumer(oracle):
    def slow_decode(maps, letterbox, stride):
        time.sleep(0.01)
        return tiny_decode(maps, letterbox, stride)

    sink = MemorySink()
    backend = load_backend(model=oracle.model_path)
    stats = Pipeline(backend, SyntheticSource(width=160, height=120, frames=40), [sink], workers=1,
                     decoder=slow_decode, queue_size=1).run()
    assert stats.drops == 0 and [m["seq"] for m in sink.messages] == list(range(40))


def test_max_frames_and_stop(oracle):
    sink = MemorySink()
    stats = run_pipeline(model=oracle.model_path, source=str(oracle.video_path), sinks=[sink], max_frames=5,
                         decoder=tiny_decode, handle_signals=False)
    assert stats.frames == 5 and [m["seq"] for m in sink.messages] == list(range(5))

    holder = {}
    endless = SyntheticSource(width=160, height=120, fps=100, live=True)  # never ends by itself
    timer = threading.Timer(0.5, lambda: holder["pipeline"].request_stop())
    timer.start()
    stats = run_pipeline(model=oracle.model_path, source=endless, sinks=[sink], decoder=tiny_decode,
                         handle_signals=False, on_start=lambda p: holder.__setitem__("pipeline", p))
    assert stats.interrupted and stats.frames > 0


def test_truncated_video_delivers_what_was_readable_then_reports(oracle, tmp_path):
    data = oracle.video_path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    save = tmp_path / "poses.jsonl"
    health = tmp_path / "health.json"
    with pytest.raises(SourceError, match="truncated") as info:
        run_pipeline(model=oracle.model_path, source=str(cut), save=str(save), decoder=tiny_decode,
                     health_file=str(health), handle_signals=False)
    messages = read_jsonl(save)
    assert 0 < len(messages) < oracle.num_frames
    assert info.value.stats.frames == len(messages)
    assert [m["seq"] for m in messages] == list(range(len(messages)))
    for message in messages:
        assert_matches_oracle(message, oracle.expected[message["seq"]])
    doc = json.loads(health.read_text())
    assert doc["status"] == "error" and "truncated" in doc["error"]


def test_decoder_error_is_reported_with_frames_before_it(oracle):
    def failing_decode(maps, letterbox, stride):
        if failing_decode.calls == 3:
            raise ValueError("boom")
        failing_decode.calls += 1
        return tiny_decode(maps, letterbox, stride)

    failing_decode.calls = 0
    sink = MemorySink()
    with pytest.raises(Exception, match="pipeline failed: ValueError: boom") as info:
        run_pipeline(model=oracle.model_path, source=str(oracle.video_path), sinks=[sink], workers=1,
                     decoder=failing_decode, handle_signals=False)
    assert [m["seq"] for m in sink.messages] == [0, 1, 2] and sink.closed
    assert info.value.stats.frames == 3


def test_health_file_says_running_while_running(oracle, tmp_path):
    health = tmp_path / "health.json"
    seen = []

    def peeking_decode(maps, letterbox, stride):
        seen.append(json.loads(health.read_text()))
        return tiny_decode(maps, letterbox, stride)

    run_pipeline(model=oracle.model_path, source=str(oracle.video_path), decoder=peeking_decode,
                 health_file=str(health), handle_signals=False, max_frames=3)
    assert seen and all(doc["status"] == "running" for doc in seen)
    assert set(seen[0]) >= {"status", "ts", "frames", "fps", "model", "pid"}
    assert json.loads(health.read_text())["status"] == "stopped"


def test_health_file_reports_a_model_that_fails_to_load(tmp_path):
    health = tmp_path / "health.json"
    with pytest.raises(ModelError, match="not found"):
        run_pipeline(model=str(tmp_path / "missing.onnx"), source="synthetic?frames=1", health_file=str(health),
                     decoder=tiny_decode, handle_signals=False)
    doc = json.loads(health.read_text())
    assert doc["status"] == "error" and "missing.onnx" in doc["error"] and doc["frames"] == 0


class AsyncOnnxRuntimeBackend(OnnxRuntimeBackend):
    """Real ONNX Runtime behind an ``infer_async`` shaped like the TensorRT backend's; records how many
    inferences the pipeline kept outstanding at once."""

    class Pending:
        def __init__(self, backend, future):
            self.backend, self.future = backend, future

        def result(self):
            outputs = self.future.result()
            with self.backend.lock:
                self.backend.outstanding -= 1
            return outputs

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.executor = ThreadPoolExecutor(1)
        self.lock = threading.Lock()
        self.outstanding = self.max_outstanding = 0

    def infer_async(self, batch):
        with self.lock:
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return self.Pending(self, self.executor.submit(self.infer, batch))


def test_async_backend_keeps_two_inferences_in_flight(oracle):
    backend = AsyncOnnxRuntimeBackend(oracle.model_path)
    sink = MemorySink()
    stats = Pipeline(backend, open_source(str(oracle.video_path)), [sink], decoder=tiny_decode).run()
    assert stats.frames == oracle.num_frames and backend.max_outstanding == 2 and backend.outstanding == 0
    for message in sink.messages:  # a buffer recycled too early would show another frame's people
        assert_matches_oracle(message, oracle.expected[message["seq"]])


def test_metrics_go_to_sinks_that_take_them(oracle):
    class MetricsSink(MemorySink):
        def __init__(self):
            super().__init__()
            self.metrics = []

        def publish_metrics(self, metrics):
            self.metrics.append(metrics)

    def slow_decode(maps, letterbox, stride):
        time.sleep(0.01)
        return tiny_decode(maps, letterbox, stride)

    sink = MetricsSink()
    backend = load_backend(model=oracle.model_path)
    Pipeline(backend, open_source(str(oracle.video_path)), [sink], decoder=slow_decode, metrics_interval=0.05).run()
    assert len(sink.metrics) >= 2
    assert set(sink.metrics[0]) >= {"frames", "drops", "fps", "latency_p50_ms"}
    assert [m["frames"] for m in sink.metrics] == sorted(m["frames"] for m in sink.metrics)


def test_drop_oldest_queue():
    queue = DropOldestQueue(2)
    assert queue.put(1, drop_oldest=True) is None
    queue.put(2, drop_oldest=True)
    assert queue.put(3, drop_oldest=True) == 1
    assert [queue.get(), queue.get()] == [2, 3]
    with pytest.raises(IndexError):
        queue.get(timeout=0.01)


SIGINT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_pipeline import tiny_decode
    from edge_sdk.runtime.pipeline import run_pipeline
    stats = run_pipeline(model={model!r}, source="synthetic:live?fps=50&w=160&h=120", save={save!r},
                         decoder=tiny_decode, health_file={health!r}, workers=2)
    print(json.dumps(stats.to_dict()))
""")


def wait_for_lines(path, count, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("runtime exited early: " + proc.communicate()[1])
        if os.path.exists(path) and sum(1 for _ in open(path)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError("no poses written within {} s".format(timeout))


def test_sigint_shuts_down_cleanly(oracle, tmp_path):
    save, health = str(tmp_path / "poses.jsonl"), str(tmp_path / "health.json")
    script = SIGINT_SCRIPT.format(tests=os.path.join(REPO, "tests"), model=str(oracle.model_path), save=save,
                                  health=health)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(save, 5, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["interrupted"] and stats["error"] is None
    messages = read_jsonl(save)  # every line complete
    assert len(messages) == stats["frames"] >= 5
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)
    assert json.loads(open(health).read())["status"] == "stopped"


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"])
def test_cli_run_stops_cleanly_on_signal(oracle, tmp_path, signum, exit_code):
    """Ctrl-C (SIGINT) and a service stop (SIGTERM): drain, close, summary, exit 130 / 0."""
    save, health = str(tmp_path / "poses.jsonl"), str(tmp_path / "health.json")
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "run", "--model", str(oracle.model_path),
                             "--source", "synthetic:live?fps=50&w=160&h=120", "--save", save,
                             "--health-file", health, "--device-id", "cam-07"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(save, 5, proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_code, err
    assert "Traceback" not in err and "interrupted" in out and "latency p50 ms" in out
    messages = read_jsonl(save)
    assert messages and all(m["device"] == "cam-07" for m in messages)
    assert json.loads(open(health).read())["status"] == "stopped"


@pytest.mark.parametrize("packaging", ["model", "bundle"])
def test_cli_run_oracle_video_with_the_real_decoder(tmp_path, edge_sdk_cli, packaging):
    case = make_oracle(tmp_path, num_frames=12, people=3, video="three.avi")
    save = tmp_path / "poses.jsonl"
    if packaging == "bundle":
        from test_backend_onnxruntime import write_cpu_bundle

        what = ["--bundle", write_cpu_bundle(tmp_path / "bundle", case).archive]
    else:
        what = ["--model", case.model_path]
    proc = edge_sdk_cli("run", *what, "--source", case.video_path, "--save", save, "--workers", "3",
                        "--device-id", "cam-02", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "12 frames" in proc.stdout and "latency p50 ms" in proc.stdout
    messages = read_jsonl(save)
    assert [m["seq"] for m in messages] == list(range(12))
    for message in messages:
        validate_pose_message(message)
        got = np.array([p["keypoints"] for p in message["people"]], np.float32)
        want = case.expected[message["seq"]]
        assert len(got) == len(want)
        for person in want:
            present = person[:, 2] > 0
            errors = [np.abs(g[present, :2] - person[present, :2]).max() for g in got]
            best = got[int(np.argmin(errors))]
            assert min(errors) <= TOLERANCE_PX and np.all(best[~present, 2] == 0)


def test_cli_build_then_run_a_cpu_bundle(tmp_path, edge_sdk_cli):
    """`edge-sdk build` folds the normalisation into the oracle's first conv (uint8 BGR HWC input); the
    runtime must feed that bundle raw frames and still get every keypoint right."""
    case = make_oracle(tmp_path, num_frames=6, people=2)
    bundle = tmp_path / "bundle-cpu"
    edge_sdk_cli("build", case.model_path, "--target", "cpu", "-o", bundle, check=True)
    save = tmp_path / "poses.jsonl"
    edge_sdk_cli("run", "--bundle", bundle, "--source", case.video_path, "--save", save, "--quiet", check=True)
    from edge_sdk.runtime.bundle import open_bundle

    assert open_bundle(str(bundle)).meta.input.dtype == "uint8"
    messages = read_jsonl(save)
    assert [m["seq"] for m in messages] == list(range(6))
    for message in messages:
        got = np.array([p["keypoints"] for p in message["people"]], np.float32)
        assert len(got) == 2
        for person in case.expected[message["seq"]]:
            present = person[:, 2] > 0
            assert min(np.abs(g[present, :2] - person[present, :2]).max() for g in got) <= TOLERANCE_PX
