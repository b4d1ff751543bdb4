"""The pose message on the wire: JSON Schema file, compact encoding (round trip, size), format sniffing."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.runtime import messages

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads((Path(messages.__file__).resolve().parent.parent / "schemas" / "pose-v1.json").read_text())


def crowd(n_people, seq=7, w=1920, h=1080):
    rng = np.random.default_rng(n_people)
    kps = rng.uniform(0, 1, (n_people, 17, 3)) * np.array([w, h, 1.0])
    kps[:, 3] = 0  # a joint not found
    return messages.build_pose_message("cam-01", seq, 1764000000.123456, w, h, "rtsp://cam/1",
                                       messages.people_to_json(kps, rng.uniform(0, 3, n_people)),
                                       {"preprocess": 1.25, "infer": 7.5, "decode": 2.0, "total": 10.75})


@pytest.mark.parametrize("n_people", [0, 1, 50])
def test_compact_round_trip_matches_json_within_quantisation(n_people):
    msg = crowd(n_people)
    jsonschema.validate(msg, SCHEMA)
    payload = messages.encode_compact(msg)
    back = messages.decode_message(payload)
    jsonschema.validate(back, SCHEMA)
    assert {k: back[k] for k in ("v", "device", "seq", "ts", "frame", "latency_ms")} == \
           {k: msg[k] for k in ("v", "device", "seq", "ts", "frame", "latency_ms")}
    if n_people:
        a = np.array([p["keypoints"] for p in back["people"]])
        b = np.array([p["keypoints"] for p in msg["people"]])
        assert np.abs(a[..., :2] - b[..., :2]).max() <= 0.125 + 0.05  # quarter pixel vs JSON's 0.1 px rounding
        assert np.abs(a[..., 2] - b[..., 2]).max() <= 0.5 / 255 + 0.0005
        assert (a[:, 3] == 0).all()
        assert len(payload) * 3 < len(messages.encode_json(msg))  # the point of it
    assert messages.decode_message(messages.encode_json(msg)) == msg


def test_schema_rejects_what_the_reader_rejects():
    msg = crowd(1)
    for bad in (dict(msg, v=2), dict(msg, seq="7"), dict(msg, people=[{"keypoints": [[0, 0, 0]] * 16}])):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
        with pytest.raises(ValueError):
            messages.validate_pose_message(bad)
