"""The runtime pipeline: source -> preprocess -> infer -> decode (thread pool) -> sinks.

Threaded mode (default), one thread per stage so the stages overlap::

    capture --q_frames--> preprocess --q_batches--> infer --q_results (futures, in order)--> publish (caller)
                          (writes into one of a few      \\--> decode pool (N workers)
                           backend input buffers, reused)

* Queues are bounded and shallow (``queue_size`` 2, or 1 for a live source; decode futures: one per worker
  plus one), so a full-speed run is held back rather than buffered: a frame waiting in a queue is latency.
  A live source (camera, stream) drops the OLDEST waiting frame when the pipeline is behind, so what is
  published stays fresh; a file source blocks instead, so no frame is ever dropped.
* Admission control: at most ``max_in_flight`` frames (default 2, at least one batch) are between
  admission and the sinks. A file source is admitted before each read, and its reads are timed so that a
  frame reaches the engine as the engine becomes free (``_Pacer``), so at full speed a frame does not wait
  in a queue; a live source is read as it delivers and admitted when the preprocess stage takes its
  newest frame. Latency stays near the sequential loop's while the stages still overlap.
* Decode runs in a thread pool (numpy/OpenCV release the GIL); futures are queued in frame order, so
  results leave in frame order whatever order the workers finish in.
* End of stream, ``stop()``, SIGINT (Ctrl-C) and SIGTERM all drain the frames already in flight, close
  the sinks and return; a second Ctrl-C aborts at once.
* Every message carries ``latency_ms``: ``capture`` (reading/decoding the frame; for a camera this
  includes waiting for it), ``preprocess``, ``infer``, ``decode``, ``publish`` (waiting after decode for
  earlier frames and the publisher) and ``total`` (start of the frame's read -> handed to the sinks, so
  it covers every stage: ``total`` >= the sum of the others). For a file source the read starts when the
  frame is admitted, so ``total`` is admission -> sinks; for a live source it is capture -> sinks (it
  includes the wait for admission).

Sequential mode runs the same stages one after another in the caller's thread (benchmarks, ``bench``).
"""

import collections
import logging
import signal
import socket
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional

import numpy as np

from edge_sdk.errors import ConfigError, EdgeSdkError
from edge_sdk.runtime.messages import build_pose_message, people_to_json
from edge_sdk.runtime.preprocess import UnusableFrame, preprocess_frame

log = logging.getLogger("edge_sdk.pipeline")

STAGES = ("capture", "preprocess", "infer", "decode", "publish", "total")

# frames admitted (read from a file source, or taken from a live source's queue) and not yet handed to the
# sinks; see Pipeline and docs/runtime.md ("Latency") for the measurements behind the default
DEFAULT_MAX_IN_FLIGHT = 2
# while a threaded pipeline runs, a thread waiting for the GIL (a stage woken by its queue) waits at most this
# long behind a decode worker's Python code (CPython's default is 5 ms, a frame time of latency per hop)
SWITCH_INTERVAL_S = 0.001


def check_max_in_flight(value: Any) -> int:
    """``value`` as the in-flight bound (an int >= 1); a ConfigError in one line otherwise."""
    try:
        number = int(value)
        if number != float(value):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError("--max-in-flight must be a whole number of frames (got {!r})".format(value)) from None
    if number < 1:
        raise ConfigError("--max-in-flight must be at least 1 (got {})".format(number))
    return number

_END = object()  # end of stream marker passed down the queues


def default_decoder(meta: Any) -> Callable[..., Any]:
    """``decode(maps, letterbox, stride) -> (keypoints17 [P, 17, 3] frame pixels, scores [P])`` using
    :mod:`edge_sdk.runtime.decode` (``maps``: {role: array of one frame}, e.g. heatmaps/pafs or peaks/pafs)
    with the settings of ``meta.decoder`` (the model's, plus any command-line overrides)."""
    from edge_sdk.runtime import decode as decode_module
    from edge_sdk.runtime.decoder_settings import decode_config
    from edge_sdk.runtime.skeleton import get_skeleton

    config = decode_config(getattr(meta, "decoder", None))
    skeleton = get_skeleton(getattr(meta, "skeleton", None))

    use_peaks = "peaks" in meta.outputs
    second = "limb_scores" if "limb_scores" in meta.outputs else "pafs"  # limbs scored in the engine
    function_name = "decode_limbs" if second == "limb_scores" else "decode_peaks" if use_peaks else "decode_poses"
    function = getattr(decode_module, function_name, None)
    if function is None:
        raise EdgeSdkError("this edge-sdk has no PAF decoder (edge_sdk.runtime.decode.{} is missing); "
                           "reinstall edge-sdk".format(function_name))

    def decode(maps, letterbox, stride):
        first = maps["peaks"] if use_peaks else maps["heatmaps"]
        poses = function(first, maps[second], config, skeleton=skeleton)
        return poses.to_frame(letterbox, stride)

    return decode


class DropOldestQueue(object):
    """A bounded FIFO. ``put(item, drop_oldest=True)`` never blocks: when full it discards the oldest
    item and returns it; with ``drop_oldest=False`` it waits for room (``stop`` event aborts the wait)."""

    def __init__(self, maxsize):
        self.maxsize = max(1, int(maxsize))
        self._items = collections.deque()
        self._cond = threading.Condition()

    def put(self, item, drop_oldest=False, stop=None):
        with self._cond:
            dropped = None
            if drop_oldest:
                if len(self._items) >= self.maxsize:
                    dropped = self._items.popleft()
            else:
                while len(self._items) >= self.maxsize:
                    if stop is not None and stop.is_set():
                        return item  # not queued: the caller is shutting down
                    self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def put_end(self):
        """Queue the end-of-stream marker even when full (it must never be dropped or block)."""
        with self._cond:
            self._items.append(_END)
            self._cond.notify_all()

    def get(self, timeout=None, stop=None):
        """The oldest item; raises ``IndexError`` after ``timeout`` seconds without one, or as soon as the
        ``stop`` event is set while waiting."""
        with self._cond:
            deadline = None if timeout is None else time.perf_counter() + timeout
            while not self._items:
                remaining = None if deadline is None else deadline - time.perf_counter()
                if (remaining is not None and remaining <= 0) or (stop is not None and stop.is_set()):
                    raise IndexError("empty")
                self._cond.wait(remaining if remaining is not None else 0.1)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self):
        return self.get(timeout=0)

    def __len__(self):
        with self._cond:
            return len(self._items)


class Credits(object):
    """Admission control: at most ``limit`` frames between admission and the sinks. ``acquire`` waits for a
    credit (``stop`` event aborts the wait: returns False); ``release`` gives credits back. ``peak`` is the most
    frames ever in flight at once (the bound is checked against it)."""

    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self.in_flight = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, stop=None):
        with self._cond:
            while self.in_flight >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            self._take()
            return True

    def try_acquire(self):
        with self._cond:
            if self.in_flight >= self.limit:
                return False
            self._take()
            return True

    def _take(self):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self, count=1):
        if count <= 0:
            return
        with self._cond:
            self.in_flight = max(0, self.in_flight - count)
            self._cond.notify_all()


class _Pacer(object):
    """Just-in-time admission of a file source's frames: the next frame is read when it will reach the
    engine (the slowest stage) as the engine becomes free, not earlier, so it does not wait in a queue.
    ``ahead``: frames admitted that have not yet started inference; ``busy_since``: when the inference in
    progress started (None: idle); moving averages of the inference time and of read + preprocess time
    (the lead a frame needs to be ready for the engine).

    ``serial`` (``Pipeline(pace="serial")``): the next frame is timed to reach the engine when the previous
    one's DECODE ends, so only reading and preprocessing overlap (for an engine that shares every CPU core
    with decoding). Measured on the 2-core dev machine it lowered latency but also fps (real model 1.16x
    latency at 0.86x fps vs 1.35x at 1.08x), so the default (``pace=True``) overlaps inference of one frame
    with the decoding of the previous ones."""

    ALPHA = 0.2
    MAX_WAIT_S = 1.0  # a wait never lasts longer (a wrong estimate must not stall the run)

    def __init__(self, batch=1, serial=False):
        self.batch = max(1, int(batch))
        self.serial = bool(serial)
        self.ahead = 0
        self.busy_since = None
        self.infer_s = None
        self.lead_s = 0.0
        self.decoding = 0  # frames inferred, not yet handed to the sinks
        self.inferred_at = None  # when the last inference ended
        self.decode_s = 0.0
        self._cond = threading.Condition()

    def _average(self, old, new):
        return new if old is None else old + self.ALPHA * (new - old)

    def admitted(self):
        with self._cond:
            self.ahead += 1

    def left(self, count):
        """``count`` admitted frames started inference or were discarded before it."""
        if count > 0:
            with self._cond:
                self.ahead = max(0, self.ahead - count)
                self._cond.notify_all()

    def infer_started(self, count, lead_s):
        with self._cond:
            self.ahead = max(0, self.ahead - count)
            self.busy_since = time.perf_counter()
            self.lead_s = self._average(self.lead_s, lead_s)
            self._cond.notify_all()

    def infer_done(self, infer_s, count=1):
        with self._cond:
            self.busy_since = None
            self.infer_s = self._average(self.infer_s, infer_s)
            self.decoding += count
            self.inferred_at = time.perf_counter()
            self._cond.notify_all()

    def published(self, decode_s=None):
        """A frame left decoding (handed to the sinks, or discarded); ``decode_s``: inference end -> sinks."""
        with self._cond:
            self.decoding = max(0, self.decoding - 1)
            if decode_s is not None:
                self.decode_s = self._average(self.decode_s, decode_s)
            self._cond.notify_all()

    def _ready_at(self):
        """When a frame read now should start being read (None: now)."""
        if self.busy_since is not None and self.infer_s is not None:
            return self.busy_since + self.infer_s + (self.decode_s if self.serial else 0.0) - self.lead_s
        if self.serial and self.decoding and self.inferred_at is not None:
            return self.inferred_at + self.decode_s - self.lead_s
        return None

    def wait_for_room(self, stop):
        """Wait until a frame read now reaches the engine about when it is free (or ``stop`` is set)."""
        deadline = time.perf_counter() + self.MAX_WAIT_S
        with self._cond:
            while not stop.is_set():
                now = time.perf_counter()
                if now >= deadline:
                    return
                if self.ahead >= self.batch:  # a batch already waits for the engine
                    wait = 0.05
                else:
                    ready_at = self._ready_at()
                    if ready_at is None or ready_at <= now:
                        return
                    wait = ready_at - now
                self._cond.wait(min(wait, deadline - now))


class PipelineStats(object):
    """Counters and per-stage latency samples of one run (the last ``keep`` samples per stage)."""

    def __init__(self, mode="pipelined", keep=5000):
        self.mode = mode
        self.frames = 0  # messages published
        self.captured = 0  # frames read from the source
        self.drops = 0  # live frames discarded because the pipeline was behind
        self.unusable = 0  # frames skipped because the model cannot take them (e.g. 1x8000)
        self.max_in_flight = None  # the in-flight bound (admission control) of the run
        self.peak_in_flight = 0  # the most frames that were ever between admission and the sinks
        self.started = None
        self.finished = None
        self.interrupted = False
        self.stop_signal = None  # SIGINT / SIGTERM number when a signal stopped the run
        self.error = None
        self.latency = {stage: collections.deque(maxlen=keep) for stage in STAGES}
        self._recent = collections.deque(maxlen=64)  # publish times, for the current fps
        self._lock = threading.Lock()

    @property
    def elapsed_s(self):
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self):
        elapsed = self.elapsed_s
        return self.frames / elapsed if elapsed > 0 else 0.0

    def current_fps(self, window=2.0):
        """Frames per second over the last ``window`` seconds (what the health file reports)."""
        now = time.perf_counter()
        with self._lock:
            recent = [t for t in self._recent if now - t <= window]
        if len(recent) < 2:
            return 0.0 if not recent or self.elapsed_s <= 0 else self.fps
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def record(self, latency_ms):
        with self._lock:
            self.frames += 1
            self._recent.append(time.perf_counter())
            for stage, value in latency_ms.items():
                if stage in self.latency:
                    self.latency[stage].append(value)

    def percentile(self, stage, q=50):
        values = list(self.latency.get(stage, ()))
        return float(np.percentile(values, q)) if values else 0.0

    def to_dict(self):
        return {
            "mode": self.mode, "frames": self.frames, "captured": self.captured, "drops": self.drops,
            "unusable": self.unusable, "max_in_flight": self.max_in_flight, "peak_in_flight": self.peak_in_flight,
            "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2), "interrupted": self.interrupted,
            "error": None if self.error is None else str(self.error),
            "latency_p50_ms": {s: round(self.percentile(s, 50), 2) for s in STAGES},
            "latency_p95_ms": {s: round(self.percentile(s, 95), 2) for s in STAGES},
        }

    def metrics(self):
        """The periodic metrics document (MQTT ``metrics`` topic): counters, current fps, p50 latencies."""
        return {"frames": self.frames, "captured": self.captured, "drops": self.drops, "unusable": self.unusable,
                "fps": round(self.current_fps(), 2), "elapsed_s": round(self.elapsed_s, 1),
                "latency_p50_ms": {s: round(self.percentile(s, 50), 2) for s in STAGES}}

    def summary(self):
        """A few human lines for the end of ``edge-sdk run``."""
        lines = ["{} frames in {:.1f} s: {:.1f} fps ({}{}{}{})".format(
            self.frames, self.elapsed_s, self.fps, self.mode,
            ", {} dropped".format(self.drops) if self.drops else "",
            ", {} unusable frames skipped".format(self.unusable) if self.unusable else "",
            ", interrupted" if self.interrupted else "")]
        lines.append("latency p50 ms: " + "  ".join(
            "{} {:.1f}".format(stage, self.percentile(stage, 50)) for stage in STAGES))
        return "\n".join(lines)


_BACKEND_BUFFERS = weakref.WeakKeyDictionary()


def _input_buffers(backend, count):
    """``count`` input buffers of ``backend``, kept for the backend's lifetime: pipelines run one after
    another on one backend (bench rounds) reuse them instead of allocating pinned memory each time."""
    try:
        buffers = _BACKEND_BUFFERS.setdefault(backend, [])
    except TypeError:  # not weak-referenceable: plain allocation
        buffers = []
    while len(buffers) < count:
        buffers.append(backend.new_input_buffer())
    return buffers[:count]


class _Batch(object):
    __slots__ = ("frames", "boxes", "buffer", "preprocess_ms", "infer_ms", "outputs")

    def __init__(self, frames, boxes, buffer, preprocess_ms):
        self.frames = frames
        self.boxes = boxes
        self.buffer = buffer
        self.preprocess_ms = preprocess_ms
        self.infer_ms = 0.0
        self.outputs = None


class Pipeline(object):
    """Runs ``backend`` over ``source`` into ``sinks``. ``run()`` returns :class:`PipelineStats`."""

    def __init__(self, backend, source, sinks=(), workers=2, decoder=None, device_id=None, queue_size=None,
                 buffers=None, max_frames=None, sequential=False, infer_depth=2, metrics_interval=5.0,
                 max_in_flight=None, pace=True):
        self.backend = backend
        self.source = source
        self.sinks = list(sinks)
        self.workers = max(1, int(workers))
        self.meta = backend.meta
        self.decoder = decoder or default_decoder(self.meta)
        self.device_id = device_id or socket.gethostname().split(".")[0]
        self.live = bool(getattr(source, "live", False))
        # frames waiting for preprocessing: a file keeps a few read ahead; a live source only the newest one,
        # so what gets inferred is the freshest frame, not one that waited behind older ones
        # shallow queues: backpressure, not buffering (every queued frame adds a frame time of latency)
        self.queue_size = max(1, int(queue_size)) if queue_size else (1 if self.live else 2)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.sequential = bool(sequential)
        self.stats = PipelineStats("sequential" if self.sequential else "pipelined")
        # admission control: a frame is admitted when its read starts (file source) or when it is taken
        # from a live source's queue, and counted until the sinks have it; at most max_in_flight at once
        # (at least one batch), so at full speed at most about one frame waits per stage
        limit = DEFAULT_MAX_IN_FLIGHT if max_in_flight is None else check_max_in_flight(max_in_flight)
        self.max_in_flight = max(limit, int(getattr(self.meta.input, "batch", 1) or 1))
        self._credits = Credits(1 if self.sequential else self.max_in_flight)
        self.stats.max_in_flight = self._credits.limit
        # a file source's reads are also timed to the engine (see _Pacer); a live source paces itself
        self._pacer = (_Pacer(self.meta.input.batch, serial=(pace == "serial"))
                       if pace and not self.live and not self.sequential else None)
        self._stop = threading.Event()  # finish: stop reading, drain what is in flight
        self._abort = threading.Event()  # give up at once (second Ctrl-C, publisher died)
        self._stopped_by_request = False
        self._errors = []
        self._lock = threading.Lock()
        self._infer_async = hasattr(backend, "infer_async") and not self.sequential
        self._infer_failed = False
        self._metrics_at = time.perf_counter()
        self.infer_depth = max(1, int(infer_depth))
        self.metrics_interval = metrics_interval
        # input buffers: the batches in flight in the engine, one being preprocessed, one waiting between
        count = int(buffers) if buffers else (self.infer_depth if self._infer_async else 1) + 2
        self._pool = DropOldestQueue(max(2, count))
        for buffer in _input_buffers(backend, max(2, count)):
            self._pool.put(buffer)
        self._roles = dict(self.meta.outputs)

    # -- control ---------------------------------------------------------------------------------

    def stop(self):
        """Ask the pipeline to finish: stop reading the source, drain what is in flight, return."""
        self._stop.set()

    @property
    def stopping(self):
        return self._stop.is_set()

    def _fail(self, exc, stop=True):
        with self._lock:
            self._errors.append(exc)
        if stop:
            self._stop.set()

    # -- shared steps ----------------------------------------------------------------------------

    def _frame_maps(self, outputs, i):
        maps = {}
        for role, name in self._roles.items():
            array = outputs[name][i]
            maps[role] = array if array.dtype == np.float32 else array.astype(np.float32)
        return maps

    def _decode(self, frame, box, maps):
        t0 = time.perf_counter()
        keypoints17, scores = self.decoder(maps, box, self.meta.stride)
        people = people_to_json(keypoints17, scores)
        return people, (time.perf_counter() - t0) * 1000.0, time.perf_counter()

    def _message(self, frame, people, latency):
        h, w = frame.image.shape[:2]
        return build_pose_message(self.device_id, frame.seq, frame.ts, w, h, frame.source, people, latency)

    def _publish(self, message):
        for sink in self.sinks:
            sink.write(message)
        self.stats.record(message["latency_ms"])
        now = time.perf_counter()
        if self.metrics_interval and now - self._metrics_at >= self.metrics_interval:
            self._metrics_at = now
            metrics = self.stats.metrics()
            for sink in self.sinks:
                if hasattr(sink, "publish_metrics"):  # the MQTT publisher's periodic metrics topic
                    sink.publish_metrics(metrics)

    def _skip_frame(self, exc):
        """Count a frame the model cannot take; say so once (a camera may send many)."""
        with self._lock:
            self.stats.unusable += 1
            first = self.stats.unusable == 1
        if first:
            log.warning("skipping a frame the model cannot take (%s); further ones are only counted "
                        "('unusable' in metrics and the health file)", exc)

    def _preprocess_batch(self, frames, spec, buffer):
        """Preprocess ``frames`` into ``buffer``; unusable ones are skipped and counted. Returns (frames, boxes)."""
        kept, boxes = [], []
        for frame in frames:
            try:
                boxes.append(preprocess_frame(frame.image, spec, out=buffer[len(kept)])[1])
                kept.append(frame)
            except UnusableFrame as exc:
                self._skip_frame(exc)
        return kept, boxes

    def _left_ahead(self, count):
        if self._pacer is not None:
            self._pacer.left(count)

    def _discard(self, count):
        """``count`` admitted frames dropped before inference (unusable, or a stage failed)."""
        self._credits.release(count)
        self._left_ahead(count)

    def _capture_allowed(self):
        return self.max_frames is None or self.stats.captured < self.max_frames

    # -- sequential ------------------------------------------------------------------------------

    def _run_sequential(self):
        spec = self.meta.input
        buffer = self._pool.get()
        for frame in self.source:
            if self._stop.is_set() or not self._capture_allowed():
                break
            self.stats.captured += 1
            t0 = time.perf_counter()
            try:
                _, box = preprocess_frame(frame.image, spec, out=buffer[0])
            except UnusableFrame as exc:
                self._skip_frame(exc)
                continue
            t1 = time.perf_counter()
            outputs = self.backend.infer(buffer)
            t2 = time.perf_counter()
            people, decode_ms, t3 = self._decode(frame, box, self._frame_maps(outputs, 0))
            latency = {"capture": frame.read_ms, "preprocess": (t1 - t0) * 1000.0, "infer": (t2 - t1) * 1000.0,
                       "decode": decode_ms, "publish": (time.perf_counter() - t3) * 1000.0,
                       "total": (time.perf_counter() - frame.clock) * 1000.0 + frame.read_ms}
            self._publish(self._message(frame, people, latency))
            if self.max_frames is not None and self.stats.captured >= self.max_frames:
                break

    # -- threaded --------------------------------------------------------------------------------

    def _capture_loop(self, q_frames):
        """Reads the source. A file source waits for a credit BEFORE reading each frame (admission), so a
        frame is read only when the pipeline can take it and no frame ages in the queues; a live source is
        read as it delivers (a camera does not wait) and its frames are admitted by the preprocess stage."""
        frames = iter(self.source)
        held = False  # a file source's credit for the frame being read
        try:
            while True:
                if not self.live:
                    if not self._credits.acquire(stop=self._stop):
                        break
                    held = True
                    if self._pacer is not None:
                        self._pacer.wait_for_room(self._stop)
                frame = next(frames, None)
                if frame is None or self._stop.is_set() or not self._capture_allowed():
                    break
                self.stats.captured += 1
                if self.live:
                    if q_frames.put(frame, drop_oldest=True) is not None:
                        with self._lock:
                            self.stats.drops += 1
                else:
                    if self._pacer is not None:
                        self._pacer.admitted()
                    if q_frames.put(frame, stop=self._stop) is frame:
                        self._left_ahead(1)
                        break  # stopping while waiting for room
                held = False
                if not self._capture_allowed():
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. a truncated video: what was read is still processed
            self._fail(exc, stop=False)
        finally:
            if held:
                self._credits.release()
            q_frames.put_end()

    def _next_frames(self, q_frames, batch):
        """Up to ``batch`` frames: waits for the first; a file source waits to fill the batch, a live one
        takes what is there. A live source's frames are admitted here: a credit is taken before each frame
        is taken from the queue (the first one waited for, further ones only if free), so while the pipeline
        is full the camera keeps replacing the waiting frame with a fresher one. Returns (frames, reached_end)."""
        frames = []
        held = 0  # live: a credit taken for the next frame, not yet used
        stopped_at = None
        try:
            while True:
                if self.live and not held:
                    if frames:
                        if not self._credits.try_acquire():
                            return frames, False
                    elif not self._credits.acquire(stop=self._abort):
                        return frames, True
                    held = 1
                try:
                    item = q_frames.get(timeout=0.1)
                except IndexError:
                    if frames and self.live:
                        return frames, False
                    if self._stop.is_set():  # a camera read may hang: do not wait for it for ever
                        stopped_at = stopped_at or time.perf_counter()
                        if time.perf_counter() - stopped_at > 2.0 or self._abort.is_set():
                            return frames, True
                    continue
                if item is _END:
                    return frames, True
                frames.append(item)
                held = 0
                if len(frames) >= batch:
                    return frames, False
                if self.live and not len(q_frames):
                    return frames, False
        finally:
            self._credits.release(held)

    def _preprocess_loop(self, q_frames, q_batches):
        spec = self.meta.input
        failed = False
        try:
            while True:
                frames, ended = self._next_frames(q_frames, spec.batch)
                if frames and failed:
                    self._discard(len(frames))  # a stage failed: discarded, not in flight
                elif frames:
                    try:
                        try:
                            buffer = self._pool.get(stop=self._abort)
                        except IndexError:
                            self._discard(len(frames))
                            return
                        t0 = time.perf_counter()
                        kept, boxes = self._preprocess_batch(frames, spec, buffer)
                        self._discard(len(frames) - len(kept))  # unusable, skipped: not in flight
                        frames = kept
                        if frames:
                            batch = _Batch(frames, boxes, buffer, (time.perf_counter() - t0) * 1000.0)
                            if q_batches.put(batch, stop=self._abort) is batch:  # aborted
                                self._discard(len(frames))
                        else:  # all unusable: nothing to infer
                            self._pool.put(buffer)
                    except Exception as exc:  # noqa: BLE001
                        failed = True
                        self._discard(len(frames))
                        self._fail(exc)
                if ended:
                    return
        finally:
            q_batches.put_end()

    def _finish_inference(self, batch, handle, started, q_results, executor):
        """Wait for a batch's outputs (``handle``: outputs, or a pending async inference), queue its
        frames' decode in frame order, give its input buffer back to the pool (and the credits of frames
        that will not reach the sinks)."""
        queued = 0
        try:
            if self._infer_failed:
                return
            if self._infer_async:
                outputs = handle.result()
                self._infer_done(started, len(batch.frames))
            else:
                outputs = handle
            batch.infer_ms = (time.perf_counter() - started) * 1000.0
            for i, (frame, box) in enumerate(zip(batch.frames, batch.boxes)):
                future = executor.submit(self._decode, frame, box, self._frame_maps(outputs, i))
                item = (frame, batch.preprocess_ms, batch.infer_ms, future)
                if q_results.put(item, stop=self._abort) is item:
                    break  # aborted
                queued += 1
        except Exception as exc:  # noqa: BLE001
            self._infer_failed = True
            self._fail(exc)
        finally:
            self._pool.put(batch.buffer)
            self._credits.release(len(batch.frames) - queued)

    def _infer_done(self, started, count):
        if self._pacer is not None:
            self._pacer.infer_done(time.perf_counter() - started, count)

    def _infer_loop(self, q_batches, q_results, executor):
        """Runs inference. A backend with ``infer_async`` (TensorRT) keeps ``infer_depth`` batches in
        flight, so the GPU queues the next frame while the host collects the previous one's outputs."""
        pending = collections.deque()
        try:
            while True:
                try:
                    batch = q_batches.get(stop=self._abort)
                except IndexError:
                    return
                if batch is _END:
                    break
                if self._infer_failed:
                    self._pool.put(batch.buffer)
                    self._discard(len(batch.frames))
                    continue
                if self._pacer is not None:
                    lead_ms = batch.preprocess_ms + max(frame.read_ms for frame in batch.frames)
                    self._pacer.infer_started(len(batch.frames), lead_ms / 1000.0)
                started = time.perf_counter()
                try:
                    if self._infer_async:
                        pending.append((batch, self.backend.infer_async(batch.buffer), started))
                    else:
                        pending.append((batch, self.backend.infer(batch.buffer), started))
                        self._infer_done(started, len(batch.frames))
                except Exception as exc:  # noqa: BLE001
                    self._infer_failed = True
                    self._fail(exc)
                    self._pool.put(batch.buffer)
                    self._credits.release(len(batch.frames))
                while len(pending) >= (self.infer_depth if self._infer_async else 1):
                    self._finish_inference(*pending.popleft(), q_results=q_results, executor=executor)
            while pending:
                self._finish_inference(*pending.popleft(), q_results=q_results, executor=executor)
        finally:
            for batch, _handle, _started in pending:  # aborted: give the buffers back
                self._pool.put(batch.buffer)
                self._credits.release(len(batch.frames))
            q_results.put_end()

    def _publish_loop(self, q_results):
        failed = False
        while True:
            item = q_results.get()
            if item is _END:
                return
            try:
                failed = self._publish_one(item, failed)
            finally:
                self._credits.release()  # handed to the sinks (or discarded): no longer in flight
                if self._pacer is not None:
                    frame, preprocess_ms, infer_ms, _future = item
                    self._pacer.published(time.perf_counter() - frame.clock - (preprocess_ms + infer_ms) / 1000.0)

    def _publish_one(self, item, failed):
        """Wait for one frame's decode (in frame order) and hand its message to the sinks; returns whether
        the run has failed (then the frame is discarded)."""
        frame, preprocess_ms, infer_ms, future = item
        try:
            people, decode_ms, decoded_at = future.result()
        except Exception as exc:  # noqa: BLE001
            if not failed:
                self._fail(exc)
            return True
        if failed:
            return True
        now = time.perf_counter()
        latency = {"capture": frame.read_ms, "preprocess": preprocess_ms, "infer": infer_ms,
                   "decode": decode_ms, "publish": (now - decoded_at) * 1000.0,
                   "total": (now - frame.clock) * 1000.0 + frame.read_ms}
        try:
            self._publish(self._message(frame, people, latency))
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk under --save
            self._fail(exc)
            return True
        return False

    def _run_threaded(self):
        q_frames = DropOldestQueue(self.queue_size)
        q_batches = DropOldestQueue(1 if self.live else max(1, self.queue_size // 2))
        q_results = DropOldestQueue(self.workers + max(1, self.queue_size // 2))  # every worker busy, no more
        executor = ThreadPoolExecutor(max_workers=self.workers)
        threads = [
            threading.Thread(target=self._capture_loop, args=(q_frames,), name="capture", daemon=True),
            threading.Thread(target=self._preprocess_loop, args=(q_frames, q_batches), name="preprocess",
                             daemon=True),
            threading.Thread(target=self._infer_loop, args=(q_batches, q_results, executor), name="infer",
                             daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._publish_loop(q_results)
        except BaseException:
            self._abort.set()
            raise
        finally:
            self._stop.set()
            for thread in threads[1:]:
                thread.join(10.0)
            threads[0].join(2.0)  # a blocking camera read may take a moment; the thread is a daemon
            executor.shutdown(wait=True)

    # -- entry point -----------------------------------------------------------------------------

    def run(self):
        """Process the source to its end (or until ``stop()``); returns the stats. The first error of any
        stage is in ``stats.error`` (frames before it were still published)."""
        self.stats.started = time.perf_counter()
        try:
            if self.sequential:
                try:
                    self._run_sequential()
                except Exception as exc:  # noqa: BLE001 - same reporting as threaded mode
                    self._fail(exc)
            else:
                previous = sys.getswitchinterval()
                sys.setswitchinterval(min(previous, SWITCH_INTERVAL_S))
                try:
                    self._run_threaded()
                finally:
                    sys.setswitchinterval(previous)
        finally:
            self.stats.finished = time.perf_counter()
            self.stats.peak_in_flight = self._credits.peak
            self.stats.interrupted = self._stopped_by_request
            if self._errors:
                self.stats.error = self._errors[0]
        return self.stats

    def request_stop(self):
        """``stop()`` from a signal handler or another thread, remembered as an interruption."""
        self._stopped_by_request = True
        self.stop()


class _SignalHandlers(object):
    """SIGINT/SIGTERM -> ``pipeline.request_stop()`` while the pipeline runs (main thread only); a second
    SIGINT raises KeyboardInterrupt to abort."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.previous = {}
        self.received = []

    def _handle(self, signum, _frame):
        if signum == signal.SIGINT and self.received:
            raise KeyboardInterrupt
        self.received.append(signum)
        self.pipeline.stats.stop_signal = signum
        self.pipeline.request_stop()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _error_with_stats(error, stats):
    if not isinstance(error, EdgeSdkError):
        wrapped = EdgeSdkError("pipeline failed: {}: {}".format(type(error).__name__, error))
        wrapped.__cause__ = error
        error = wrapped
    error.stats = stats
    return error


def run_pipeline(model: Optional[str] = None, bundle: Optional[str] = None, source: Any = "synthetic",
                 save: Optional[str] = None, sinks: Optional[List[Any]] = None, backend: Any = None,
                 prefer: str = "auto", workers: int = 2, max_frames: Optional[int] = None, sequential: bool = False,
                 health_file: Optional[str] = None, device_id: Optional[str] = None,
                 decoder: Optional[Callable[..., Any]] = None, threads: Optional[int] = None,
                 queue_size: Optional[int] = None, handle_signals: bool = True,
                 on_start: Optional[Callable[..., Any]] = None, metrics_interval: float = 5.0,
                 decoder_settings: Any = None, fit: Optional[str] = None,
                 max_in_flight: Optional[int] = None) -> Any:
    """Run a model (``model`` .onnx, ``bundle`` dir, or a loaded ``backend``) over ``source`` (a string for
    :func:`edge_sdk.runtime.sources.open_source` or a Source); messages go to ``save`` (JSON lines) and
    ``sinks``. Returns :class:`PipelineStats`. On an error (e.g. a truncated video) the frames before it
    are published, sinks (also those passed in) are closed, and the EdgeSdkError is raised with the stats as
    ``.stats``.
    ``on_start(pipeline)`` is called once everything is open (e.g. to keep a handle for ``stop()``);
    every ``metrics_interval`` s, sinks with ``publish_metrics`` (MQTT) get :meth:`PipelineStats.metrics`.
    ``decoder_settings`` ({name: value}) and ``fit`` override the model metadata's; ``max_in_flight``: frames
    admitted at once (default DEFAULT_MAX_IN_FLIGHT; see Pipeline)."""
    from edge_sdk.runtime.sinks import JsonlSink
    from edge_sdk.runtime.sources import open_source

    if max_in_flight is not None:
        check_max_in_flight(max_in_flight)  # a bad value is an error before anything opens
    own_backend = backend is None
    all_sinks = list(sinks or [])
    opened_source = None
    current = {}  # the pipeline, once built, for the health snapshot
    health = None
    if health_file:
        from edge_sdk.runtime.health import HealthFile

        def snapshot():
            stats = current["pipeline"].stats if "pipeline" in current else PipelineStats()
            data = {"frames": stats.frames, "fps": round(stats.current_fps(), 2), "drops": stats.drops,
                    "unusable": stats.unusable}
            for sink in all_sinks:  # the MQTT publisher's delivery counters (losses are visible on the device)
                if hasattr(sink, "health"):
                    data.update(sink.health())
            return data

        # created first, so that a model or source that fails to open still leaves an "error" document
        health = HealthFile(health_file, model or bundle or "model", snapshot)
    try:
        if own_backend:
            from edge_sdk.runtime.backends.loader import load_backend

            backend = load_backend(model=model, bundle=bundle, prefer=prefer, threads=threads)
        if decoder_settings or fit:
            from edge_sdk.runtime.decoder_settings import apply_run_settings

            apply_run_settings(backend.meta, decoder_settings, fit)
        opened_source = open_source(source)
        if save:
            all_sinks.append(JsonlSink(save))
        pipeline = Pipeline(backend, opened_source, all_sinks, workers=workers, decoder=decoder,
                            device_id=device_id, queue_size=queue_size, max_frames=max_frames,
                            sequential=sequential, metrics_interval=metrics_interval, max_in_flight=max_in_flight)
        current["pipeline"] = pipeline
        if health is not None:
            if backend.meta.model != "unknown":
                health.model = backend.meta.model
            health.start()
        if on_start is not None:
            on_start(pipeline)
        if handle_signals:
            with _SignalHandlers(pipeline):
                stats = pipeline.run()
        else:
            stats = pipeline.run()
    except BaseException as exc:
        if health is not None:
            health.stop(error=exc if not isinstance(exc, KeyboardInterrupt) else None)
        raise
    finally:
        stopped = "pipeline" in current and current["pipeline"]._stopped_by_request
        if health is not None and stopped:
            health.status = "stopping"  # no longer "running" while the sinks close
        for sink in all_sinks:
            try:
                if stopped and hasattr(sink, "shutdown"):  # a signal: bounded time, not the full flush timeout
                    sink.shutdown()
                else:
                    sink.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's own error
                pass
        if opened_source is not None:
            opened_source.close()
        if own_backend and backend is not None:
            backend.close()
    if health is not None:
        health.stop(error=stats.error)
    if stats.error is not None:
        raise _error_with_stats(stats.error, stats)
    return stats


__all__ = ["Pipeline", "PipelineStats", "DropOldestQueue", "Credits", "run_pipeline", "default_decoder", "STAGES",
           "DEFAULT_MAX_IN_FLIGHT", "check_max_in_flight"]
