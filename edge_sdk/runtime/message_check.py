"""Check every message a device can publish before anything uses it: the one place for those rules.

A subscriber trusts no device. ``parse_pose_payload`` and ``parse_metrics_payload`` take raw MQTT payload bytes
and return a fresh, normalised dict holding only the fields of the schema (``edge_sdk/schemas/pose-v1.json``),
or raise :class:`MessageError` (a ValueError) saying in one line what was wrong. The bounds hold before any
allocation depends on the payload: payload size, JSON nesting depth, integer literal length, counts (people,
latency entries, metrics fields), string lengths (and no control characters), finite numbers only (no NaN
or Infinity, in JSON or compact), frame sizes, ids. A payload whose ``device`` is not the device named by its
topic is rejected: the topic is the identity (the broker's ACL guards it).

Device-safe (Python 3.6, stdlib + numpy): the recorder and any other reader use it as well.
"""

import itertools
import json
import math
import re
from typing import Any, Dict, Optional

import numpy as np

from edge_sdk.runtime import messages
from edge_sdk.runtime.ids import is_device_id

MAX_PAYLOAD = 1 << 20          # bytes, any topic
MAX_DEPTH = 6                  # JSON nesting: message > people > person > keypoints > [x, y, s] is 5
MAX_INT_DIGITS = 20            # longer integer literals are refused before Python parses them
MAX_PEOPLE = 1000
MAX_FRAME_SIDE = 65535         # also the compact encoding's limit
MAX_SOURCE_CHARS = 1024
MAX_NAME_CHARS = 64            # latency stage names, metrics keys
MAX_TEXT_CHARS = 256           # other strings in status / metrics
MAX_LATENCY_ENTRIES = 32
MAX_FIELDS = 64                # metrics / status top-level fields
MAX_TS = 1e11                  # seconds since the epoch (year 5138): anything beyond is corrupt
MAX_SEQ = (1 << 53) - 1
MAX_ABS_NUMBER = 1e15          # any other number

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUMBER_TYPES = {int, float}  # exactly: never bool (an int subclass) or str
_STRINGS = re.compile(r'"[^"]*"')  # linear: runs after the escapes are removed


class MessageError(ValueError):
    """A payload that is not a valid message: what was wrong, in one line. Readers count it and go on."""


def topic_device(topic: Any) -> Optional[str]:
    """The device level of ``{prefix}/{device}/{kind}`` (None if the topic has fewer than two levels)."""
    parts = topic.split("/") if isinstance(topic, str) else []
    return parts[-2] if len(parts) >= 2 else None


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts / lists too) replaced by None: for documents a device
    sends, so that no NaN or Infinity is ever put on the wire."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------- JSON level

def _refuse_constant(name):
    raise MessageError("{} is not a number a message may hold (finite numbers only)".format(name))


def _bounded_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise MessageError("an integer of {} digits (at most {})".format(len(text), MAX_INT_DIGITS))
    return int(text)


def _check_depth(text):
    """Refuse JSON ``text`` nested deeper than MAX_DEPTH, before parsing it (linear time, strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    bare = _STRINGS.sub("", text.replace("\\\\", "").replace('\\"', ""))
    codes = np.frombuffer(bare.encode("utf-8"), np.uint8)
    step = ((codes == ord("[")) | (codes == ord("{"))).astype(np.int32) - \
        ((codes == ord("]")) | (codes == ord("}"))).astype(np.int32)
    if step.size and int(np.cumsum(step).max()) > MAX_DEPTH:
        raise MessageError("JSON nested deeper than {} levels".format(MAX_DEPTH))


def _longest_digit_run(text):
    """Length of the longest run of ASCII digits in ``text`` (strings included: only a trigger)."""
    codes = np.frombuffer(text.encode("utf-8"), np.uint8)
    digits = ((codes >= 48) & (codes <= 57)).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], digits, [0]))))
    return int((edges[1::2] - edges[0::2]).max()) if edges.size else 0


def load_json_object(payload: Any, what: str = "message") -> Dict[str, Any]:
    """Bounded bytes -> a JSON object (dict); MessageError for anything else."""
    if not isinstance(payload, (bytes, bytearray, memoryview, str)):
        raise MessageError("{} payload of type {}".format(what, type(payload).__name__))
    if len(payload) > MAX_PAYLOAD:
        raise MessageError("{} of {} bytes is over the {}-byte limit".format(what, len(payload), MAX_PAYLOAD))
    try:
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("{} is not UTF-8: {}".format(what, exc)) from None
    _check_depth(text)
    # integer literals are bounded before Python converts them (quadratic in their length on Python 3.6); the
    # hook slows parsing, so it runs only when the text has a long run of digits at all
    parse_int = _bounded_int if _longest_digit_run(text) > MAX_INT_DIGITS else None
    try:
        body = json.loads(text, parse_constant=_refuse_constant, parse_int=parse_int)
    except MessageError:
        raise
    except (ValueError, RecursionError) as exc:
        raise MessageError("{} is not valid JSON: {}".format(what, str(exc)[:200])) from None
    if not isinstance(body, dict):
        raise MessageError("{} must be a JSON object, got {}".format(what, type(body).__name__))
    return body


# ---------------------------------------------------------------------------------------------------- values

def _number(value, what, low=-MAX_ABS_NUMBER, high=MAX_ABS_NUMBER):
    """A finite int/float (never bool or str) within [low, high], as float."""
    if type(value) not in (int, float):
        raise MessageError("{} must be a number, got {}".format(what, type(value).__name__))
    value = float(value)
    if not math.isfinite(value):
        raise MessageError("{} is not finite".format(what))
    if not low <= value <= high:
        raise MessageError("{} = {!r} is outside [{:g}, {:g}]".format(what, value, low, high))
    return value


def _integer(value, what, low, high):
    if type(value) is not int:
        raise MessageError("{} must be an integer, got {}".format(what, type(value).__name__))
    if not low <= value <= high:
        raise MessageError("{} = {} is outside [{}, {}]".format(what, value, low, high))
    return value


def _text(value, what, limit):
    if not isinstance(value, str):
        raise MessageError("{} must be a string, got {}".format(what, type(value).__name__))
    if len(value) > limit:
        raise MessageError("{} is {} characters long (at most {})".format(what, len(value), limit))
    if _CONTROL.search(value):  # escape sequences would rewrite a terminal showing them
        raise MessageError("{} holds control characters".format(what))
    return value


def _device(value, topic_device):
    if not is_device_id(value):
        raise MessageError("device {!r} is not a valid device id".format(
            value[:80] if isinstance(value, str) else value))
    if topic_device is not None and value != topic_device:
        raise MessageError("device {!r} in a message on the topic of device {!r}: a device speaks only for "
                           "itself".format(value, topic_device[:80]))
    return value


def _keypoints(value, i, w, h):
    """17 x [x, y, score], finite; x, y clipped to the frame (when its size is known), score >= 0. The slow,
    precise path: it names what is wrong (:func:`_people` runs it only on a message that fails)."""
    if not isinstance(value, list) or len(value) != 17:
        raise MessageError("person {} must have 17 keypoints of [x, y, score]".format(i))
    out = []
    for j, kp in enumerate(value):
        if not isinstance(kp, list) or len(kp) != 3:
            raise MessageError("person {} keypoint {} must be [x, y, score]".format(i, j))
        what = "person {} keypoint {}".format(i, j)
        x, y, s = (_number(v, what) for v in kp)
        if w > 0:
            x = min(max(x, 0.0), w - 1.0)
        if h > 0:
            y = min(max(y, 0.0), h - 1.0)
        out.append([x, y, max(s, 0.0)])
    return out


def _people_slow(people, w, h):
    out = []
    for i, person in enumerate(people):
        if not isinstance(person, dict):
            raise MessageError("person {} must be an object".format(i))
        score = _number(person.get("score", 0.0), "person {} score".format(i))
        out.append({"score": score, "keypoints": _keypoints(person.get("keypoints"), i, w, h)})
    return out


def _people(people, w, h):
    """The checked, normalised ``people`` list: the checks of :func:`_keypoints`, vectorised (a message of 50
    people is checked in about the time it takes to parse); any failure is reported by the precise path."""
    if not isinstance(people, list):
        raise MessageError("people must be a list")
    if len(people) > MAX_PEOPLE:
        raise MessageError("{} people (at most {})".format(len(people), MAX_PEOPLE))
    if not people:
        return []
    rows, scores = [], []
    for person in people:
        kps = person.get("keypoints") if type(person) is dict else None
        if type(kps) is not list or len(kps) != 17:
            return _people_slow(people, w, h)
        rows.extend(kps)
        scores.append(person.get("score", 0.0))
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {3} or \
            not set(map(type, itertools.chain.from_iterable(rows))) <= _NUMBER_TYPES or \
            not set(map(type, scores)) <= _NUMBER_TYPES:
        return _people_slow(people, w, h)
    kps = np.array(rows, dtype=np.float64).reshape(-1, 17, 3)
    score = np.array(scores, dtype=np.float64)
    if not (np.isfinite(kps).all() and np.isfinite(score).all()) or np.abs(kps).max() > MAX_ABS_NUMBER or \
            np.abs(score).max() > MAX_ABS_NUMBER:
        return _people_slow(people, w, h)
    if w > 0:
        np.clip(kps[:, :, 0], 0.0, w - 1.0, out=kps[:, :, 0])
    if h > 0:
        np.clip(kps[:, :, 1], 0.0, h - 1.0, out=kps[:, :, 1])
    np.maximum(kps[:, :, 2], 0.0, out=kps[:, :, 2])
    return [{"score": s, "keypoints": k} for s, k in zip(score.tolist(), kps.tolist())]


def check_pose_message(msg: Any, topic_device: Optional[str] = None) -> Dict[str, Any]:
    """A decoded pose message (dict) -> a fresh normalised dict with only the schema's fields; MessageError."""
    if not isinstance(msg, dict):
        raise MessageError("pose message must be a JSON object, got {}".format(type(msg).__name__))
    if msg.get("v") != messages.SCHEMA_VERSION or type(msg.get("v")) is not int:
        raise MessageError("unsupported pose message version {!r} (this reader knows v{})".format(
            msg.get("v") if not isinstance(msg.get("v"), str) else msg.get("v")[:20], messages.SCHEMA_VERSION))
    for key in ("device", "seq", "ts", "frame", "people"):
        if key not in msg:
            raise MessageError("pose message has no {!r}".format(key))
    device = _device(msg["device"], topic_device)
    seq = _integer(msg["seq"], "seq", 0, MAX_SEQ)
    ts = _number(msg["ts"], "ts", 0.0, MAX_TS)
    frame = msg["frame"]
    if not isinstance(frame, dict):
        raise MessageError("frame must be an object {w, h, source}")
    w = _integer(frame.get("w"), "frame.w", 0, MAX_FRAME_SIDE)
    h = _integer(frame.get("h"), "frame.h", 0, MAX_FRAME_SIDE)
    source = _text(frame.get("source", ""), "frame.source", MAX_SOURCE_CHARS)
    out_people = _people(msg["people"], w, h)
    latency = msg.get("latency_ms", {})
    if latency is None:
        latency = {}
    if not isinstance(latency, dict):
        raise MessageError("latency_ms must be an object of stage: ms")
    if len(latency) > MAX_LATENCY_ENTRIES:
        raise MessageError("latency_ms has {} entries (at most {})".format(len(latency), MAX_LATENCY_ENTRIES))
    out_latency = {}
    for name, ms in latency.items():
        _text(name, "latency_ms stage name", MAX_NAME_CHARS)
        out_latency[name] = _number(ms, "latency_ms[{!r}]".format(name[:MAX_NAME_CHARS]))
    return {"v": messages.SCHEMA_VERSION, "device": device, "seq": seq, "ts": ts,
            "frame": {"w": w, "h": h, "source": source}, "people": out_people, "latency_ms": out_latency}


def parse_pose_payload(payload: Any, topic_device: Optional[str] = None) -> Dict[str, Any]:
    """Pose payload bytes (JSON schema v1 or the compact encoding) -> normalised message dict.

    ``topic_device``: the device level of the topic it came on; a payload naming another device is refused.
    Raises :class:`MessageError` (one line) for anything out of schema or out of bounds.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise MessageError("pose payload must be bytes, got {}".format(type(payload).__name__))
    if len(payload) > MAX_PAYLOAD:
        raise MessageError("pose message of {} bytes is over the {}-byte limit".format(len(payload), MAX_PAYLOAD))
    if bytes(payload[:3]) == messages.COMPACT_MAGIC:
        try:
            msg = messages.decode_compact(bytes(payload))
        except ValueError as exc:
            raise MessageError(str(exc)[:300]) from None
    else:
        msg = load_json_object(payload, "pose message")
    return check_pose_message(msg, topic_device)


# ---------------------------------------------------------------------------------------------- metrics, status

def _flat_value(value, what, nested):
    """A metrics / status value: None, bool, finite number, short string, or (one level) an object of those."""
    if value is None or isinstance(value, bool):
        return value
    if type(value) in (int, float):
        return _number(value, what) if type(value) is float else _integer(
            value, what, -int(MAX_ABS_NUMBER), int(MAX_ABS_NUMBER))
    if isinstance(value, str):
        return _text(value, what, MAX_TEXT_CHARS)
    if isinstance(value, dict) and nested:
        return _flat_object(value, what, nested=False)
    raise MessageError("{} must be a number, string, bool or null{}".format(
        what, " or an object of those" if nested else ""))


def _flat_object(body, what, nested=True):
    if len(body) > MAX_FIELDS:
        raise MessageError("{} has {} fields (at most {})".format(what, len(body), MAX_FIELDS))
    out = {}
    for key, value in body.items():
        _text(key, "{} field name".format(what), MAX_NAME_CHARS)
        out[key] = _flat_value(value, "{}.{}".format(what, key), nested)
    return out


def _parse_side_payload(payload, topic_device, what):
    body = _flat_object(load_json_object(payload, what), what)
    if "device" in body:
        _device(body["device"], topic_device)
    elif topic_device is not None:
        if not is_device_id(topic_device):
            raise MessageError("topic device {!r} is not a valid device id".format(topic_device[:80]))
        body["device"] = topic_device
    return body


def parse_metrics_payload(payload: Any, topic_device: Optional[str] = None) -> Dict[str, Any]:
    """Metrics payload bytes (a flat JSON object: counters, fps, per-stage latency objects) -> normalised dict;
    MessageError for non-finite numbers, long strings, too many fields, or another device's name."""
    return _parse_side_payload(payload, topic_device, "metrics")


def parse_status_payload(payload: Any, topic_device: Optional[str] = None) -> Dict[str, Any]:
    """Retained status payload bytes (``{"state": ..., "device": ..., ...}``) -> normalised dict; MessageError."""
    body = _parse_side_payload(payload, topic_device, "status")
    if "state" in body and not isinstance(body["state"], str):
        raise MessageError("status.state must be a string")
    return body
