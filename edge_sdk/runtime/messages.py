"""The pose message (MQTT payload and ``--save`` JSON lines): one object per frame, versioned.

Schema v1 (DESIGN.md, "Contracts")::

    {"v": 1, "device": str, "seq": int, "ts": float, "frame": {"w": int, "h": int, "source": str},
     "people": [{"score": float, "keypoints": [[x, y, score] x 17]}], "latency_ms": {stage: ms}}

Keypoints are COCO-17 order in original-frame pixels; a joint not found is [0, 0, 0].
"""

import json

import numpy as np

SCHEMA_VERSION = 1


def people_to_json(keypoints17, scores):
    """[P, 17, 3] keypoints + [P] scores -> the message's ``people`` list (rounded for compactness)."""
    people = []
    keypoints17 = np.asarray(keypoints17, dtype=np.float32).reshape(-1, 17, 3)
    for kp, score in zip(keypoints17, np.asarray(scores, dtype=np.float32).reshape(-1)):
        people.append({
            "score": round(float(score), 4),
            "keypoints": [[round(float(x), 1), round(float(y), 1), round(float(s), 3)] for x, y, s in kp],
        })
    return people


def build_pose_message(device, seq, ts, frame_w, frame_h, source, people, latency_ms=None):
    """A schema-v1 pose message as a dict (``people`` from :func:`people_to_json`)."""
    return {
        "v": SCHEMA_VERSION,
        "device": str(device),
        "seq": int(seq),
        "ts": float(ts),
        "frame": {"w": int(frame_w), "h": int(frame_h), "source": str(source)},
        "people": people,
        "latency_ms": {k: round(float(v), 3) for k, v in (latency_ms or {}).items()},
    }


def validate_pose_message(msg):
    """Raise ValueError saying what is wrong if ``msg`` is not a schema-v1 pose message."""
    if not isinstance(msg, dict):
        raise ValueError("pose message must be a JSON object, got {}".format(type(msg).__name__))
    if msg.get("v") != SCHEMA_VERSION:
        raise ValueError("unsupported pose message version {!r} (this reader knows v{})".format(
            msg.get("v"), SCHEMA_VERSION))
    for key, kind in (("device", str), ("seq", int), ("ts", (int, float)), ("frame", dict), ("people", list)):
        if not isinstance(msg.get(key), kind):
            raise ValueError("pose message field {!r} missing or of the wrong type".format(key))
    for i, person in enumerate(msg["people"]):
        kps = person.get("keypoints") if isinstance(person, dict) else None
        if not isinstance(kps, list) or len(kps) != 17 or any(len(k) != 3 for k in kps):
            raise ValueError("person {} must have 17 keypoints of [x, y, score]".format(i))
    return msg


def encode_json(msg):
    """Compact JSON bytes of a message."""
    return json.dumps(msg, separators=(",", ":")).encode("utf-8")


def decode_json(payload):
    """Bytes -> validated message dict (ValueError on anything malformed)."""
    try:
        msg = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("pose message is not valid JSON: {}".format(exc)) from exc
    return validate_pose_message(msg)
