"""The one validator for incoming pose payloads: decode (JSON or compact), check bounds, return the message.

Every consumer of pose messages (recorder, dashboard, subscriber) calls :func:`parse_pose_payload`, so a
payload is either a well-formed schema-v1 message or a :class:`MessageError` saying what is wrong.
Python 3.6 syntax, numpy-free: this module sits in the runtime package.
"""

import math

from edge_sdk.runtime import messages

MAX_PAYLOAD_BYTES = 1 << 20
MAX_PEOPLE = 1000
MAX_DEVICE_CHARS = 255
MAX_SEQ = (1 << 63) - 1
MAX_COORDINATE = 1e6


class MessageError(ValueError):
    """A pose payload that cannot be used: malformed, out of bounds, or from another device than its topic."""


def _finite(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MessageError("{} must be a finite number, got {!r}".format(what, value))
    return value


def parse_pose_payload(payload, topic_device=None):
    """Bytes (JSON or compact) -> the validated message dict; MessageError if anything is wrong.

    ``topic_device``: the device level of the topic it came on; a message naming another device is refused
    (one device must not write another's poses).
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise MessageError("pose payload must be bytes, got {}".format(type(payload).__name__))
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError("pose payload of {} bytes is over the {}-byte limit".format(len(payload),
                                                                                     MAX_PAYLOAD_BYTES))
    try:
        msg = messages.decode_message(bytes(payload))
    except ValueError as exc:
        raise MessageError(str(exc)) from exc
    device = msg["device"]
    if not device or len(device) > MAX_DEVICE_CHARS or any(c in device for c in "/+#\x00"):
        raise MessageError("device id {!r} is not one MQTT topic level".format(device[:40]))
    if topic_device is not None and device != topic_device:
        raise MessageError("message names device {!r} but came on the topic of {!r}".format(device[:40],
                                                                                            topic_device[:40]))
    if isinstance(msg["seq"], bool) or not 0 <= msg["seq"] <= MAX_SEQ:
        raise MessageError("seq {!r} is out of range".format(msg["seq"]))
    _finite(msg["ts"], "ts")
    frame = msg["frame"]
    for key in ("w", "h"):
        value = frame.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise MessageError("frame {} must be an integer in [0, 65535], got {!r}".format(key, value))
    if len(msg["people"]) > MAX_PEOPLE:
        raise MessageError("{} people is over the limit of {}".format(len(msg["people"]), MAX_PEOPLE))
    for i, person in enumerate(msg["people"]):
        _finite(person.get("score", 0.0), "person {} score".format(i))
        values = [v for point in person["keypoints"] for v in point]
        try:  # in C: a NaN or infinity makes the sum non-finite, a non-number raises TypeError
            ok = math.isfinite(sum(values)) and -MAX_COORDINATE <= min(values) and max(values) <= MAX_COORDINATE \
                and bool not in set(map(type, values))
        except TypeError:
            ok = False
        if not ok:
            raise MessageError("person {} keypoints must be finite numbers within +-{:g}".format(i, MAX_COORDINATE))
    latency = msg.get("latency_ms", {})
    if not isinstance(latency, dict):
        raise MessageError("latency_ms must be an object")
    for name, value in latency.items():
        _finite(value, "latency_ms[{!r}]".format(str(name)[:40]))
    return msg
