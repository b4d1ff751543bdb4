"""The bounded on-device queue of messages waiting for the broker (QoS 1 delivery while offline).

Messages leave in the order they came in. The head always lives in memory; once ``memory_limit``
messages are held, newer ones spill to append-only segment files under ``spill_dir`` (if given) and
are read back in order when the head drains. When ``max_messages`` are held, the OLDEST message is
dropped (a live pose stream values the newest frames most) and counted in ``dropped``.

A spill disk that is full, read-only or missing never stops the caller: the queue says so once in the log,
counts the failed writes in ``spill_errors``, and keeps going in memory (at most ``memory_limit`` messages,
dropping the oldest, counted in ``dropped``). A segment that cannot be read back is dropped and counted.

Segment file format: records of ``<u32 topic length><topic utf-8><u32 payload length><payload>``.
"""

import collections
import logging
import os
import struct
import threading

_LEN = struct.Struct("<I")
log = logging.getLogger("edge_sdk.mqtt")


class _Segment(object):
    """One spill file: appended to while it is the newest, read from the front while it is the oldest."""

    def __init__(self, path):
        self.path = path
        self.count = 0  # records still unread
        self.written = 0
        self.read_offset = 0
        self.sealed = False
        with open(path, "wb"):
            pass

    def append(self, topic, payload):
        """Append one record; on OSError (disk full, read-only) the segment is sealed: a partly written
        record at its end is never read, and nothing more is appended to it."""
        topic_bytes = topic.encode("utf-8")
        try:
            with open(self.path, "ab") as f:
                f.write(_LEN.pack(len(topic_bytes)) + topic_bytes + _LEN.pack(len(payload)) + payload)
        except OSError:
            self.sealed = True
            raise
        self.count += 1
        self.written += 1

    def read(self, n):
        """Read up to ``n`` records from the front."""
        out = []
        with open(self.path, "rb") as f:
            f.seek(self.read_offset)
            while len(out) < n and self.count > 0:
                (tlen,) = _LEN.unpack(f.read(4))
                topic = f.read(tlen).decode("utf-8")
                (plen,) = _LEN.unpack(f.read(4))
                payload = f.read(plen)
                out.append((topic, payload))
                self.count -= 1
            self.read_offset = f.tell()
        return out

    def remove(self):
        try:
            os.remove(self.path)
        except OSError:
            pass


class DeliveryQueue(object):
    """Thread-safe FIFO of ``(topic, payload_bytes)`` bounded at ``max_messages``, dropping the oldest."""

    def __init__(self, max_messages=10000, memory_limit=None, spill_dir=None, segment_size=1000, guard=None):
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.max_messages = int(max_messages)
        self.memory_limit = int(memory_limit or max_messages)
        self.spill_dir = spill_dir
        self.guard = guard  # held around each spill write (edge_sdk.runtime.update_lock: an update waits for it)
        self.segment_size = int(segment_size)
        self.dropped = 0
        self.spill_errors = 0  # writes or reads of spill files that failed (the messages stayed in memory)
        self.spill_error = None  # the first failure, as text (for the health file)
        self._memory = collections.deque()
        self._segments = collections.deque()
        self._tail = collections.deque()  # newer than every segment: where messages go while spilling fails
        self._segment_index = 0
        self._lock = threading.Lock()
        if spill_dir:
            try:
                if not os.path.isdir(spill_dir):
                    os.makedirs(spill_dir)
                for name in os.listdir(spill_dir):  # leftovers of a run that did not flush: start clean
                    if name.startswith("edge-sdk-spill-") and name.endswith(".bin"):
                        os.remove(os.path.join(spill_dir, name))
            except OSError as exc:
                self._spill_failed(exc)

    def __len__(self):
        with self._lock:
            return self._size()

    def _size(self):
        return len(self._memory) + sum(s.count for s in self._segments) + len(self._tail)

    @property
    def spilled(self):
        """Messages currently held on disk."""
        with self._lock:
            return sum(s.count for s in self._segments)

    def _spill_failed(self, exc):
        """Count a spill failure; the first one is logged (once per queue)."""
        self.spill_errors += 1
        if self.spill_error is None:
            self.spill_error = "{}: {}".format(self.spill_dir, getattr(exc, "strerror", None) or exc)
            log.warning("MQTT spill dir %s cannot be used (%s): queueing in memory only, at most %d messages; "
                        "the oldest are dropped beyond (counted in metrics and the health file)",
                        self.spill_dir, getattr(exc, "strerror", None) or exc, self.memory_limit)

    def put(self, topic, payload):
        """Append a message; if the bound is hit, drop the oldest one (counted in ``dropped``)."""
        with self._lock:
            if self._size() >= self.max_messages:
                self._drop_oldest()
            if self.spill_dir and not self._tail and (self._segments or len(self._memory) >= self.memory_limit):
                try:
                    if self.guard is not None:
                        with self.guard:
                            self._spill(topic, payload)
                    else:
                        self._spill(topic, payload)
                    return
                except OSError as exc:
                    self._spill_failed(exc)
            if self._segments or self._tail:  # newer than what is on disk: behind it, within the memory bound
                if len(self._memory) + len(self._tail) >= self.memory_limit:
                    self._drop_oldest()
                self._tail.append((topic, payload))
            elif len(self._memory) >= self.memory_limit:  # memory-only queue smaller than its bound
                self._memory.popleft()
                self.dropped += 1
                self._memory.append((topic, payload))
            else:
                self._memory.append((topic, payload))

    def _drop_oldest(self):
        self._refill()
        if self._memory:
            self._memory.popleft()
            self.dropped += 1

    def _spill(self, topic, payload):
        if not self._segments or self._segments[-1].written >= self.segment_size or self._segments[-1].sealed:
            self._new_segment()
        self._segments[-1].append(topic, payload)

    def _new_segment(self):
        path = os.path.join(self.spill_dir, "edge-sdk-spill-{:08d}.bin".format(self._segment_index))
        self._segment_index += 1
        self._segments.append(_Segment(path))

    def _refill(self):
        """Move records from the oldest spill segment (then the tail) to memory when memory has run dry."""
        while not self._memory and self._segments:
            segment = self._segments[0]
            if segment.count:
                n = max(1, min(segment.count, self.memory_limit))
                try:
                    self._memory.extend(segment.read(n))
                except (OSError, struct.error, UnicodeDecodeError) as exc:  # unreadable: its messages are lost
                    self._spill_failed(exc)
                    self.dropped += segment.count
                    segment.count = 0
            if segment.count == 0:
                self._segments.popleft()
                segment.remove()
        if not self._memory and not self._segments and self._tail:
            self._memory, self._tail = self._tail, collections.deque()

    def peek(self):
        """The oldest message without removing it, or None."""
        with self._lock:
            self._refill()
            return self._memory[0] if self._memory else None

    def pop(self):
        """Remove and return the oldest message, or None when empty."""
        with self._lock:
            self._refill()
            return self._memory.popleft() if self._memory else None

    def close(self):
        """Delete spill files (messages still queued are lost; the publisher flushes first)."""
        with self._lock:
            for segment in self._segments:
                segment.remove()
            self._segments.clear()
            self._memory.clear()
            self._tail.clear()
