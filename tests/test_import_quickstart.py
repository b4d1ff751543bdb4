"""The quickstart's real-video run: the shipped real model on the repository's real video finds people in
most frames (the pipeline API the script's `edge-sdk run` uses, without the broker and the build)."""

import json

from conftest import REPO, VIDEOS

from edge_sdk.runtime.pipeline import run_pipeline

MODEL = REPO / "models" / "tfpose-mnv2s" / "tfpose-mnv2s.onnx"
VIDEO = REPO / "docs" / "media" / "street.mp4"
SCRIPT = REPO / "scripts" / "quickstart.sh"


def test_the_quickstart_uses_the_shipped_model_and_video_outside_tests():
    text = SCRIPT.read_text()
    assert "models/tfpose-mnv2s/tfpose-mnv2s.onnx" in text and "docs/media/street.mp4" in text
    assert "tests/" not in text
    # docs/media/PROVENANCE.md says it is this copy of the mmpose demo video
    assert VIDEO.read_bytes() == (VIDEOS / "mmpose_demo.mp4").read_bytes()


def test_the_real_model_finds_people_in_most_frames_of_the_real_video(tmp_path):
    save = tmp_path / "poses.jsonl"
    stats = run_pipeline(model=str(MODEL), source=str(VIDEO), save=str(save), handle_signals=False)
    messages = [json.loads(line) for line in save.read_text().splitlines()]
    assert stats.frames == len(messages) == 5
    people = [len(m["people"]) for m in messages]
    assert sum(1 for p in people if p) >= 4, people
    assert sum(people) >= 8, people  # 2-4 people are clearly visible in every frame
    for message in messages:
        for person in message["people"]:
            assert sum(1 for k in person["keypoints"] if k[2] > 0) >= 4
