"""`edge-sdk render`: saved poses drawn on their frames offline; `bench` replays a folder up to --frames."""

import json

import cv2
import numpy as np
import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.testing.oracle_model import frame_color, make_oracle, write_oracle_images

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The oracle's poses saved by `edge-sdk run` over an image folder of its frames."""
    folder = tmp_path_factory.mktemp("render")
    case = make_oracle(folder, num_frames=5, people=2, video=None)
    images = write_oracle_images(folder / "frames", case.num_frames, case.width, case.height)
    return case, images, folder


def test_render_writes_one_image_per_frame_on_the_real_frames(saved, tmp_path, edge_sdk_cli):
    case, images, folder = saved
    poses = tmp_path / "poses.jsonl"
    edge_sdk_cli("run", "--model", case.model_path, "--source", images, "--save", poses, "--device-id", "cam",
                 "--quiet", check=True)
    out = tmp_path / "overlays"
    proc = edge_sdk_cli("render", poses, "--source", images, "-o", out, check=True)
    assert "rendered 5 frame(s)" in proc.stdout and "blank" not in proc.stdout
    written = sorted((out / "cam").iterdir())
    assert [p.name for p in written] == ["{:06d}.png".format(k) for k in range(5)]
    for k, path in enumerate(written):
        image = cv2.imread(str(path))
        assert image.shape == (case.height, case.width, 3)
        assert tuple(int(v) for v in image[-1, -1]) == frame_color(k)  # the frame itself, not a blank canvas
        # the skeleton is drawn where the decoded people are: a changed pixel at each person's hip centre
        message = json.loads(poses.read_text().splitlines()[k])
        for person in message["people"]:
            hips = np.array(person["keypoints"])[[11, 12], :2].mean(axis=0)
            x, y = int(round(hips[0])), int(round(hips[1]))
            assert tuple(int(v) for v in image[y, x]) != frame_color(k)

    video = tmp_path / "overlay.avi"
    edge_sdk_cli("render", poses, "--source", images, "-o", video, check=True)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()


def test_render_bad_input(saved, tmp_path, edge_sdk_cli):
    case, images, _ = saved
    from edge_sdk.render import render_poses

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"v": 1, "device": "d", "seq": 0, "ts": 0, "frame": {"w": 10, "h": 10}, "people": []}\n'
                   "{not json\n")
    proc = edge_sdk_cli("render", bad, "-o", tmp_path / "o")
    assert proc.returncode == 2 and "bad.jsonl:2: not a pose message" in proc.stderr
    assert "Traceback" not in proc.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text().splitlines()[0] + "\n")
    for kwargs, message in (({"source": tmp_path / "nowhere"}, "not found"),
                            ({"fps": 0}, "--fps must be in"),
                            ({"source": tmp_path / "empty"}, "no readable frame")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match=message):
            render_poses(good, tmp_path / "o", progress=False, **kwargs)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        render_poses(good, tmp_path / "file.png", progress=False)
    with pytest.raises(ConfigError, match="not found"):
        render_poses(tmp_path / "missing.jsonl", tmp_path / "o", progress=False)
    negative = tmp_path / "negative.jsonl"
    negative.write_text(good.read_text().replace('"seq": 0', '"seq": -3'))
    with pytest.raises(ConfigError, match="seq = -3 is outside"):
        render_poses(negative, tmp_path / "o", progress=False)


def test_render_without_its_source_counts_blank_frames(saved, tmp_path):
    from edge_sdk.render import render_poses

    poses = tmp_path / "p.jsonl"
    poses.write_text(json.dumps({"v": 1, "device": "d", "seq": 9, "ts": 0.0, "frame": {"w": 320, "h": 240},
                                 "people": []}) + "\n")
    report = render_poses(poses, tmp_path / "o", source=saved[1], progress=False)
    assert (report.written, report.blank) == (1, 1)  # the folder has 5 frames: seq 9 has none


def test_bench_replays_an_image_folder_up_to_frames(saved, tmp_path, edge_sdk_cli):
    case, images, _ = saved
    out = tmp_path / "bench.json"
    edge_sdk_cli("bench", "--model", case.model_path, "--source", images, "--frames", 12, "--warmup", 0,
                 "--mode", "sequential", "-o", out, check=True)
    result = json.loads(out.read_text())
    assert result["runs"][0]["frames"] == 12 and not result["notes"]
    proc = edge_sdk_cli("bench", "--model", case.model_path, "--source", "synthetic?frames=3", "--frames", 6,
                        "--warmup", 0, "--mode", "sequential", "-o", out, check=True)
    assert json.loads(out.read_text())["runs"][0]["frames"] == 3
    assert "gave 3 of the 6 frames" in proc.stdout


def test_render_refuses_undrawable_messages_and_keeps_paths_inside(tmp_path):
    from edge_sdk.render import render_poses

    good = {"v": 1, "device": "cam-01", "seq": 0, "ts": 0.0, "frame": {"w": 64, "h": 48},
            "people": [{"score": 1.0, "keypoints": [[10.0, 10.0, 1.0]] * 17}]}
    poses = tmp_path / "p.jsonl"
    poses.write_text(json.dumps(good) + "\n")
    out = tmp_path / "out"
    render_poses(poses, out, progress=False)
    written = [p for p in tmp_path.rglob("*.png")]
    assert len(written) == 1 and out in written[0].parents, written
    for change, message in (({"device": "../../escape"}, "device"),
                            ({"frame": {"w": 100000, "h": 10}}, "frame"),
                            ({"people": [{"score": 1.0, "keypoints": [[float("nan"), 1.0, 1.0]] * 17}]}, "finite"),
                            ({"people": [{"score": 1.0, "keypoints": [[1e12, 1.0, 1.0]] * 17}]}, "finite")):
        poses.write_text(json.dumps(dict(good, **change)) + "\n")
        with pytest.raises(ConfigError, match="p.jsonl:1: not a pose message .*" + message):
            render_poses(poses, out, progress=False)
