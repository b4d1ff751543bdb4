"""The pose message (MQTT payload and ``--save`` JSON lines): one object per frame, versioned.

Schema v1 (DESIGN.md, "Contracts")::

    {"v": 1, "device": str, "seq": int, "ts": float, "frame": {"w": int, "h": int, "source": str},
     "people": [{"score": float, "keypoints": [[x, y, score] x 17]}], "latency_ms": {stage: ms}}

Keypoints are COCO-17 order in original-frame pixels, clipped to the frame; a joint not found is [0, 0, 0].
No NaN or Infinity is ever written: a non-finite keypoint becomes [0, 0, 0], a non-finite score or latency 0.
"""

import json
import math
import struct
from typing import Any, Dict, List, Optional

import numpy as np

SCHEMA_VERSION = 1


def people_to_json(keypoints17: Any, scores: Any) -> List[Dict[str, Any]]:
    """[P, 17, 3] keypoints + [P] scores -> the message's ``people`` list (rounded for compactness)."""
    people = []
    keypoints17 = np.asarray(keypoints17, dtype=np.float32).reshape(-1, 17, 3)
    for kp, score in zip(keypoints17, np.asarray(scores, dtype=np.float32).reshape(-1)):
        people.append({
            "score": round(float(score), 4),
            "keypoints": [[round(float(x), 1), round(float(y), 1), round(float(s), 3)] for x, y, s in kp],
        })
    return people


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else 0.0


def clean_people(people: List[Dict[str, Any]], frame_w: int, frame_h: int) -> List[Dict[str, Any]]:
    """``people`` with every keypoint finite and inside the frame (x in [0, w-1], y in [0, h-1]); a joint with
    a non-finite value becomes [0, 0, 0] (not found), a non-finite score 0."""
    out = []
    for person in people:
        kps = np.array(person["keypoints"], dtype=np.float64).reshape(-1, 3)
        kps[~np.isfinite(kps).all(axis=1)] = 0.0
        if frame_w > 0:
            kps[:, 0] = np.clip(kps[:, 0], 0.0, frame_w - 1.0)
        if frame_h > 0:
            kps[:, 1] = np.clip(kps[:, 1], 0.0, frame_h - 1.0)
        kps[:, 2] = np.maximum(kps[:, 2], 0.0)
        kps[:, :2] = np.round(kps[:, :2], 1)
        kps[:, 2] = np.round(kps[:, 2], 3)
        out.append({"score": round(_finite(person.get("score", 0.0)), 4), "keypoints": kps.tolist()})
    return out


def build_pose_message(device: str, seq: int, ts: float, frame_w: int, frame_h: int, source: str,
                       people: List[Dict[str, Any]], latency_ms: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """A schema-v1 pose message as a dict (``people`` from :func:`people_to_json`), keypoints clipped to the
    frame and every number finite (see the module docstring)."""
    return {
        "v": SCHEMA_VERSION,
        "device": str(device),
        "seq": int(seq),
        "ts": _finite(ts),
        "frame": {"w": int(frame_w), "h": int(frame_h), "source": str(source)},
        "people": clean_people(people, int(frame_w), int(frame_h)),
        "latency_ms": {k: round(_finite(v), 3) for k, v in (latency_ms or {}).items()},
    }


def validate_pose_message(msg: Dict[str, Any]) -> Dict[str, Any]:
    """Raise ValueError (:class:`~edge_sdk.runtime.message_check.MessageError`) saying what is wrong if ``msg``
    is not a schema-v1 pose message within bounds; returns ``msg``. The rules live in ``message_check``."""
    from edge_sdk.runtime.message_check import check_pose_message

    check_pose_message(msg)
    return msg


def encode_json(msg: Dict[str, Any]) -> bytes:
    """Compact JSON bytes of a message; never NaN or Infinity (they become 0, see the module docstring)."""
    try:
        return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError:  # a message not made by build_pose_message: clean it rather than fail the run
        frame = msg.get("frame") or {}
        clean = dict(msg, ts=_finite(msg.get("ts", 0.0)),
                     people=clean_people(msg.get("people") or [], int(frame.get("w", 0)), int(frame.get("h", 0))),
                     latency_ms={k: _finite(v) for k, v in (msg.get("latency_ms") or {}).items()})
        return json.dumps(clean, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_json(payload: Any) -> Dict[str, Any]:
    """Bytes -> checked, normalised message dict (ValueError on anything malformed or out of bounds)."""
    from edge_sdk.runtime.message_check import check_pose_message, load_json_object

    return check_pose_message(load_json_object(payload, "pose message"))


# ----------------------------------------------------------------------------------------------------------------
# Compact binary encoding (same message, for low-bandwidth links; see docs/mqtt.md for the layout and size ratio)

COMPACT_MAGIC = b"\x00EP"  # a JSON payload never starts with NUL, so readers can tell the two apart
_COMPACT_HEADER = struct.Struct("<3sBIdHHBHB")  # magic, version, seq, ts, w, h, q, people, latency entries


def _short_bytes(text, limit):
    data = text.encode("utf-8")
    if len(data) > limit:
        data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
    return data


def encode_compact(msg: Dict[str, Any]) -> bytes:
    """Message dict -> compact bytes: fixed header, then arrays; coordinates quantised to 1/q px (q=4 normally).

    Layout (little-endian): header ``<3sBIdHHBHB`` (magic ``\\0EP``, schema version, seq, ts, frame w, h,
    q, people P, latency entries L); device (u8 length + utf-8); source (u16 length + utf-8); L x (u8 length +
    name, f32 ms); person scores f32[P]; x u16[P*17] and y u16[P*17] (pixels * q); keypoint scores u8[P*17]
    (score * 255).
    """
    frame = msg.get("frame", {})
    w, h = int(frame.get("w", 0)), int(frame.get("h", 0))
    if max(w, h) > 65535:
        raise ValueError("frame {}x{} too large for the compact encoding".format(w, h))
    q = 4 if max(w, h) <= 16383 else max(1, 65535 // max(w, h, 1))
    people = msg.get("people", [])
    latency = msg.get("latency_ms") or {}
    parts = [_COMPACT_HEADER.pack(COMPACT_MAGIC, int(msg.get("v", SCHEMA_VERSION)), int(msg["seq"]) & 0xFFFFFFFF,
                                  _finite(msg["ts"]), w, h, q, len(people), len(latency))]
    device = _short_bytes(str(msg.get("device", "")), 255)
    source = _short_bytes(str(frame.get("source", "")), 65535)
    parts.append(struct.pack("<B", len(device)) + device + struct.pack("<H", len(source)) + source)
    for name, value in latency.items():
        name_bytes = _short_bytes(str(name), 255)
        parts.append(struct.pack("<B", len(name_bytes)) + name_bytes + struct.pack("<f", _finite(value)))
    if people:
        kps = np.asarray([p["keypoints"] for p in people], dtype=np.float64).reshape(-1, 17, 3)
        kps = np.where(np.isfinite(kps), kps, 0.0)
        scores = np.asarray([_finite(p.get("score", 0.0)) for p in people], dtype="<f4")
        xy = np.clip(np.round(kps[:, :, :2] * q), 0, 65535).astype("<u2")
        conf = np.clip(np.round(kps[:, :, 2] * 255), 0, 255).astype("u1")
        parts += [scores.tobytes(), np.ascontiguousarray(xy[:, :, 0]).tobytes(),
                  np.ascontiguousarray(xy[:, :, 1]).tobytes(), conf.tobytes()]
    return b"".join(parts)


def decode_compact(payload: bytes) -> Dict[str, Any]:
    """Compact bytes -> message dict (ValueError if the layout is broken; the values are checked by
    :func:`edge_sdk.runtime.message_check.parse_pose_payload`, which readers use)."""
    try:
        magic, version, seq, ts, w, h, q, n_people, n_latency = _COMPACT_HEADER.unpack_from(payload, 0)
        if magic != COMPACT_MAGIC:
            raise ValueError("not a compact pose message (bad magic)")
        if version != SCHEMA_VERSION:
            raise ValueError("unsupported pose message version {} (this reader knows v{})".format(
                version, SCHEMA_VERSION))
        if q == 0:
            raise ValueError("truncated or corrupt compact pose message: quantisation 0")
        pos = _COMPACT_HEADER.size
        (n,) = struct.unpack_from("<B", payload, pos)
        device = bytes(payload[pos + 1:pos + 1 + n]).decode("utf-8")
        pos += 1 + n
        (n,) = struct.unpack_from("<H", payload, pos)
        source = bytes(payload[pos + 2:pos + 2 + n]).decode("utf-8")
        pos += 2 + n
        latency = {}
        for _ in range(n_latency):
            (n,) = struct.unpack_from("<B", payload, pos)
            name = bytes(payload[pos + 1:pos + 1 + n]).decode("utf-8")
            (value,) = struct.unpack_from("<f", payload, pos + 1 + n)
            latency[name] = round(float(value), 3)
            pos += 5 + n
        k = n_people * 17
        expected = pos + 4 * n_people + 2 * k + 2 * k + k
        if len(payload) != expected:
            raise ValueError("truncated or corrupt compact pose message: {} bytes, its header says {}".format(
                len(payload), expected))
        scores = np.frombuffer(payload, "<f4", n_people, pos).astype(np.float64)
        pos += 4 * n_people
        kps = np.empty((n_people, 17, 3), np.float64)
        kps[:, :, 0] = np.frombuffer(payload, "<u2", k, pos).reshape(n_people, 17) / float(q)
        kps[:, :, 1] = np.frombuffer(payload, "<u2", k, pos + 2 * k).reshape(n_people, 17) / float(q)
        kps[:, :, 2] = np.round(np.frombuffer(payload, "u1", k, pos + 4 * k).reshape(n_people, 17) / 255.0, 3)
    except (struct.error, UnicodeDecodeError, ZeroDivisionError) as exc:
        raise ValueError("truncated or corrupt compact pose message: {}".format(exc)) from exc
    # vectorised: numpy builds the nested lists (a per-keypoint Python loop is 10x slower at 50 people)
    people = [{"score": score, "keypoints": kp}
              for score, kp in zip(np.round(scores, 4).tolist(), np.round(kps, 3).tolist())]
    # the layout guarantees 17 x [x, y, score] per person: no per-keypoint validation needed
    return {"v": version, "device": device, "seq": seq, "ts": ts, "frame": {"w": w, "h": h, "source": source},
            "people": people, "latency_ms": latency}


def decode_message(payload: Any, topic_device: Optional[str] = None) -> Dict[str, Any]:
    """JSON or compact bytes (told apart by the first bytes) -> checked, normalised message dict; ValueError
    (``message_check.MessageError``) if malformed, out of bounds, or naming a device other than ``topic_device``."""
    from edge_sdk.runtime.message_check import parse_pose_payload

    return parse_pose_payload(payload, topic_device)
