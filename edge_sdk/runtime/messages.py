"""The pose message (MQTT payload and ``--save`` JSON lines): one object per frame, versioned.

Schema v1 (DESIGN.md, "Contracts")::

    {"v": 1, "device": str, "seq": int, "ts": float, "frame": {"w": int, "h": int, "source": str},
     "people": [{"score": float, "keypoints": [[x, y, score] x 17]}], "latency_ms": {stage: ms}}

Keypoints are COCO-17 order in original-frame pixels; a joint not found is [0, 0, 0].
"""

import json
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


def build_pose_message(device: str, seq: int, ts: float, frame_w: int, frame_h: int, source: str,
                       people: List[Dict[str, Any]], latency_ms: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
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


def validate_pose_message(msg: Dict[str, Any]) -> None:
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


def encode_json(msg: Dict[str, Any]) -> bytes:
    """Compact JSON bytes of a message."""
    return json.dumps(msg, separators=(",", ":")).encode("utf-8")


def decode_json(payload: bytes) -> Dict[str, Any]:
    """Bytes -> validated message dict (ValueError on anything malformed)."""
    try:
        msg = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("pose message is not valid JSON: {}".format(exc)) from exc
    return validate_pose_message(msg)


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
                                  float(msg["ts"]), w, h, q, len(people), len(latency))]
    device = _short_bytes(str(msg.get("device", "")), 255)
    source = _short_bytes(str(frame.get("source", "")), 65535)
    parts.append(struct.pack("<B", len(device)) + device + struct.pack("<H", len(source)) + source)
    for name, value in latency.items():
        name_bytes = _short_bytes(str(name), 255)
        parts.append(struct.pack("<B", len(name_bytes)) + name_bytes + struct.pack("<f", float(value)))
    if people:
        kps = np.asarray([p["keypoints"] for p in people], dtype=np.float64).reshape(-1, 17, 3)
        scores = np.asarray([p.get("score", 0.0) for p in people], dtype="<f4")
        xy = np.clip(np.round(kps[:, :, :2] * q), 0, 65535).astype("<u2")
        conf = np.clip(np.round(kps[:, :, 2] * 255), 0, 255).astype("u1")
        parts += [scores.tobytes(), np.ascontiguousarray(xy[:, :, 0]).tobytes(),
                  np.ascontiguousarray(xy[:, :, 1]).tobytes(), conf.tobytes()]
    return b"".join(parts)


def decode_compact(payload: bytes) -> Dict[str, Any]:
    """Compact bytes -> validated message dict (ValueError on anything malformed)."""
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


def decode_message(payload: bytes) -> Dict[str, Any]:
    """JSON or compact bytes (told apart by the first bytes) -> validated message dict; ValueError if malformed."""
    if isinstance(payload, (bytes, bytearray, memoryview)) and bytes(payload[:3]) == COMPACT_MAGIC:
        return decode_compact(bytes(payload))
    return decode_json(payload)
