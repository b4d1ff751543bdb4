"""Frame sources on real files and a real HTTP MJPEG stream (OpenCV/FFmpeg)."""

import http.server
import socketserver
import threading
import time

import cv2
import numpy as np
import pytest

from edge_sdk.errors import SourceError
from edge_sdk.runtime.sources import (
    ImageFolderSource,
    LiveCaptureSource,
    SyntheticSource,
    VideoFileSource,
    csi_pipeline,
    open_source,
    opencv_has_gstreamer,
)
from edge_sdk.testing import frame_color, write_oracle_images, write_oracle_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_oracle_video(tmp_path_factory.mktemp("video") / "clip.avi", 20, 160, 120)


def test_video_file_yields_every_frame_in_order(video):
    source = open_source(str(video))
    assert isinstance(source, VideoFileSource) and not source.live
    frames = list(source)
    source.close()
    assert [f.seq for f in frames] == list(range(20)) and [f.index for f in frames] == list(range(20))
    for frame in frames:
        assert frame.image.shape == (120, 160, 3) and frame.source == "clip.avi"
        assert np.abs(frame.image.reshape(-1, 3).mean(0) - frame_color(frame.index)).max() < 8
    assert all(b.ts >= a.ts for a, b in zip(frames, frames[1:]))


def test_image_folder_in_name_order_and_single_image(tmp_path):
    folder = write_oracle_images(tmp_path / "imgs", 3, 64, 48)
    (folder / "notes.txt").write_text("not an image")
    source = open_source(str(folder))
    assert isinstance(source, ImageFolderSource)
    frames = list(source)
    assert [tuple(f.image[0, 0]) for f in frames] == [frame_color(k) for k in range(3)]
    single = list(open_source(str(folder / "frame_00001.png")))
    assert len(single) == 1 and tuple(single[0].image[0, 0]) == frame_color(1)


def test_unreadable_image_in_folder(tmp_path):
    folder = write_oracle_images(tmp_path / "imgs", 2, 64, 48)
    (folder / "frame_00002.png").write_bytes(b"garbage")
    with pytest.raises(SourceError, match="cannot read image .*frame_00002.png"):
        list(open_source(str(folder)))


def test_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="has no images"):
        open_source(str(tmp_path))


def test_truncated_avi_delivers_readable_frames_then_reports(video, tmp_path):
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    source = open_source(str(cut))
    got = []
    with pytest.raises(SourceError, match=r"ended after (\d+) of its 20 frames: the file is truncated"):
        for frame in source:
            got.append(frame.index)
    assert 0 < len(got) < 20 and got == list(range(len(got)))


def test_truncated_mp4_cannot_be_opened(tmp_path):
    mp4 = write_oracle_video(tmp_path / "clip.mp4", 10, 160, 120)
    data = mp4.read_bytes()
    mp4.write_bytes(data[: len(data) // 2])  # mp4v writes its index (moov) at the end
    with pytest.raises(SourceError, match="cannot open video .*truncated"):
        open_source(str(mp4))


def test_file_that_is_not_a_video(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.RandomState(1).bytes(20000))
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(str(bad))


def test_missing_source(tmp_path):
    with pytest.raises(SourceError, match="not found: give a video file, an image folder, a camera index"):
        open_source(str(tmp_path / "nothing.mp4"))


def test_camera_index_that_does_not_exist():
    with pytest.raises(SourceError, match="camera 57 not found"):
        open_source("57")
    with pytest.raises(SourceError, match="camera /dev/video57 not found"):
        open_source("/dev/video57?w=1280&h=720&fourcc=MJPG")
    with pytest.raises(SourceError, match="unknown camera option.*size.*known: w, h, fps, fourcc"):
        open_source("0?size=big")
    with pytest.raises(SourceError, match="fourcc must be 4 characters"):
        open_source("0?fourcc=MJPEG")


def test_csi_camera_source():
    assert "sensor-id=1" in csi_pipeline(1) and csi_pipeline(0, 640, 480, 60).count("640") == 1
    if opencv_has_gstreamer():  # JetPack's OpenCV: the pipeline opens, or says the camera is missing
        pytest.skip("this OpenCV has GStreamer; the CSI camera itself is Jetson hardware")
    with pytest.raises(SourceError, match="csi1 needs OpenCV with GStreamer.*python3-opencv"):
        open_source("csi://1?w=640&h=480")
    with pytest.raises(SourceError, match="bad CSI camera source"):
        open_source("csi://front")


def test_synthetic_source_options():
    source = open_source("synthetic?w=96&h=64&frames=3&people=1")
    assert isinstance(source, SyntheticSource) and not source.live
    frames = list(source)
    assert len(frames) == 3 and frames[0].image.shape == (64, 96, 3)
    assert not np.array_equal(frames[0].image, frames[2].image), "figures move"
    assert open_source("synthetic:live?fps=5").live
    with pytest.raises(SourceError, match="unknown synthetic source option.*known: fps, frames, h"):
        open_source("synthetic?colour=red")
    with pytest.raises(SourceError, match="bad synthetic source option"):
        open_source("synthetic?w=big")


def test_live_synthetic_is_paced():
    source = open_source("synthetic:live?fps=50&frames=10&w=32&h=32")
    start = time.perf_counter()
    assert len(list(source)) == 10
    assert time.perf_counter() - start >= 9 / 50.0


class MjpegServer:
    """A real HTTP MJPEG camera (multipart/x-mixed-replace), stoppable and restartable on its port."""

    def __init__(self, port=0):
        self.stop_event = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                k = 0
                try:
                    while not outer.stop_event.is_set():
                        _, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), (k * 9) % 255, np.uint8))
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg.tobytes() + b"\r\n")
                        k += 1
                        time.sleep(0.02)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:{}/stream.mjpg".format(self.port)

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


def test_stream_that_disappears_raises_after_bounded_reconnects():
    server = MjpegServer()
    source = open_source(server.url, reconnect=2, reconnect_delay=0.2)
    assert isinstance(source, LiveCaptureSource) and source.live and source.name == "127.0.0.1:{}".format(server.port)
    count = 0
    with pytest.raises(SourceError, match=r"disappeared after \d+ frames and did not come back after 2 reconnect"):
        for _frame in source:
            count += 1
            if count == 5:
                server.stop()
    assert source.reconnects == 2
    source.close()


def test_stream_that_comes_back_is_reconnected():
    server = MjpegServer()
    source = open_source(server.url, reconnect=5, reconnect_delay=0.3)
    restarted = []
    restart = threading.Timer(0.2, lambda: restarted.append(MjpegServer(server.port)))
    seqs = []
    try:
        for frame in source:
            seqs.append(frame.seq)
            if len(seqs) == 5:
                server.stop()
                restart.start()
            if len(seqs) == 15:
                break
        assert seqs == list(range(15)) and source.reconnects >= 1
    finally:
        source.close()
        restart.join()
        for replacement in restarted:
            replacement.stop()


def test_stream_that_does_not_answer():
    with pytest.raises(SourceError, match="cannot open stream http://127.0.0.1:9/x"):
        open_source("http://127.0.0.1:9/x")


def test_cli_unreadable_video(tmp_path, edge_sdk_cli):
    from edge_sdk.testing import make_oracle

    case = make_oracle(tmp_path, num_frames=2, video=None)
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 500)
    proc = edge_sdk_cli("run", "--model", case.model_path, "--source", bad, timeout=60)
    assert proc.returncode == 2 and "error: cannot open video" in proc.stderr and "Traceback" not in proc.stderr


class RecordedCamera:
    """Recorded-call double of cv2.VideoCapture for a V4L2 camera (no camera on this machine)."""

    calls = []

    def __init__(self, *args):
        RecordedCamera.calls.append(("open",) + args)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop, value):
        RecordedCamera.calls.append(("set", prop, value))
        return True

    def get(self, prop):
        return 30.0

    def read(self):
        return True, np.zeros((72, 128, 3), np.uint8)

    def release(self):
        RecordedCamera.calls.append(("release",))


def test_camera_settings_are_requested_fourcc_first(monkeypatch):
    import edge_sdk.runtime.sources as sources

    RecordedCamera.calls = []
    monkeypatch.setattr(sources.cv2, "VideoCapture", RecordedCamera)
    source = open_source("2?w=1280&h=720&fps=30&fourcc=MJPG")
    assert source.live and source.name == "camera2"
    frame = next(iter(source))
    source.close()
    assert frame.image.shape == (72, 128, 3)
    assert RecordedCamera.calls[:5] == [
        ("open", 2), ("set", cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG")),
        ("set", cv2.CAP_PROP_FRAME_WIDTH, 1280.0), ("set", cv2.CAP_PROP_FRAME_HEIGHT, 720.0),
        ("set", cv2.CAP_PROP_FPS, 30.0)]
    assert RecordedCamera.calls[-1] == ("release",)
