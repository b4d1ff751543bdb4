"""Admission control (issue 17 item 5): at most ``max_in_flight`` frames between admission and the sinks.

The bound is checked by instrumenting the pipeline from the outside: a source that counts every frame it
starts reading and a sink that counts every frame handed to it; their difference (frames in flight) must
never exceed the bound. No timing is asserted.
"""

import threading
import time

import numpy as np
import pytest
from test_pipeline import tiny_decode

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.backends.loader import load_backend
from edge_sdk.runtime.pipeline import DEFAULT_MAX_IN_FLIGHT, Credits, Pipeline, check_max_in_flight, run_pipeline
from edge_sdk.runtime.sinks import MemorySink
from edge_sdk.runtime.sources import Source
from edge_sdk.testing import make_oracle, oracle_frame


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return make_oracle(tmp_path_factory.mktemp("oracle_in_flight"), num_frames=4, people=1, video=None)


class _Counter:
    """Frames started (read from the source) minus frames handed to the sinks; the most ever seen."""

    def __init__(self):
        self.started = 0
        self.done = 0
        self.peak = 0
        self.skipped = 0  # frames known never to reach the sinks (unusable)
        self._lock = threading.Lock()

    def start(self):
        with self._lock:
            self.started += 1
            self.peak = max(self.peak, self.started - self.done - self.skipped)

    def finish(self, skipped=False):
        with self._lock:
            if skipped:
                self.skipped += 1
            else:
                self.done += 1


class _CountingSource(Source):
    """A file source (not live) of ``n`` oracle frames; frame ``k`` in ``broken`` is an unusable 1x8000
    image. Counts a frame as started when its read starts."""

    def __init__(self, case, counter, n, broken=(), live=False, delay=0.0):
        self.case, self.counter, self.n, self.broken = case, counter, n, set(broken)
        self.live = live
        self.delay = delay
        self.name = "counting"

    def frames(self):
        for i in range(self.n):
            if self.delay:
                time.sleep(self.delay)
            self.counter.start()
            if i in self.broken:
                yield i, np.zeros((1, 8000, 3), np.uint8)
            else:
                yield i, oracle_frame(i % self.case.num_frames, self.case.width, self.case.height)


class _CountingSink(MemorySink):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def write(self, message):
        time.sleep(0.002)  # a slow sink: frames pile up behind it if nothing holds them back
        super().write(message)
        self.counter.finish()


def _random_slow_decode(seed):
    rng = np.random.RandomState(seed)
    lock = threading.Lock()

    def decode(maps, letterbox, stride):
        with lock:
            pause = float(rng.uniform(0, 0.01))
        time.sleep(pause)  # workers finish out of order
        return tiny_decode(maps, letterbox, stride)

    return decode


@pytest.mark.parametrize("limit, pace", [(1, True), (2, True), (3, True), (5, True), (2, "serial"), (3, False)])
def test_in_flight_bound_never_exceeded_file_order_and_no_drop(oracle, limit, pace):
    counter = _Counter()
    sink = _CountingSink(counter)
    backend = load_backend(model=oracle.model_path)
    pipeline = Pipeline(backend, _CountingSource(oracle, counter, 40), [sink], workers=4,
                        decoder=_random_slow_decode(limit), max_in_flight=limit, pace=pace)
    stats = pipeline.run()
    assert stats.error is None and stats.drops == 0
    assert [m["seq"] for m in sink.messages] == list(range(40)), "file: every frame, in order"
    assert counter.peak <= limit, "{} frames between admission and the sinks (bound {})".format(counter.peak, limit)
    assert stats.max_in_flight == limit and 1 <= stats.peak_in_flight <= limit
    assert stats.to_dict()["max_in_flight"] == limit
    assert pipeline._credits.in_flight == 0, "every credit given back at the end"


def test_default_bound_and_the_pacer_keep_every_file_frame(oracle):
    counter = _Counter()
    sink = _CountingSink(counter)
    stats = run_pipeline(model=oracle.model_path, source=_CountingSource(oracle, counter, 30), sinks=[sink],
                         decoder=tiny_decode, handle_signals=False)
    assert [m["seq"] for m in sink.messages] == list(range(30))
    assert counter.peak <= DEFAULT_MAX_IN_FLIGHT and stats.max_in_flight == DEFAULT_MAX_IN_FLIGHT


def test_unusable_frames_give_their_credit_back(oracle):
    """Skipped frames leave the pipeline: with a bound of 1 a leaked credit would stall the run."""
    counter = _Counter()
    sink = _CountingSink(counter)
    backend = load_backend(model=oracle.model_path)
    broken = (0, 3, 4, 9)
    pipeline = Pipeline(backend, _CountingSource(oracle, counter, 12, broken=broken), [sink], workers=2,
                        decoder=tiny_decode, max_in_flight=1)
    stats = pipeline.run()
    assert stats.error is None and stats.unusable == len(broken)
    assert [m["seq"] for m in sink.messages] == [i for i in range(12) if i not in broken]
    assert stats.peak_in_flight == 1 and pipeline._credits.in_flight == 0


def test_live_source_bounded_and_still_drops_the_oldest(oracle):
    def slow_decode(maps, letterbox, stride):
        time.sleep(0.03)
        return tiny_decode(maps, letterbox, stride)

    counter = _Counter()
    sink = MemorySink()
    backend = load_backend(model=oracle.model_path)
    live = _CountingSource(oracle, counter, 60, live=True, delay=0.003)
    stats = Pipeline(backend, live, [sink], workers=2, decoder=slow_decode, max_in_flight=2).run()
    seqs = [m["seq"] for m in sink.messages]
    assert stats.captured == 60 and stats.drops > 0 and stats.frames + stats.drops == 60
    assert seqs == sorted(seqs) and seqs[-1] == 59, "the newest frame survives: the oldest are dropped"
    assert 1 <= stats.peak_in_flight <= 2


def test_a_failing_stage_does_not_hang_on_credits(oracle):
    calls = []

    def failing_decode(maps, letterbox, stride):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("decoder bug")
        return tiny_decode(maps, letterbox, stride)

    counter = _Counter()
    sink = MemorySink()
    backend = load_backend(model=oracle.model_path)
    stats = Pipeline(backend, _CountingSource(oracle, counter, 50), [sink], workers=1, decoder=failing_decode,
                     max_in_flight=1).run()
    assert "decoder bug" in str(stats.error) and [m["seq"] for m in sink.messages] == [0, 1]


def test_batch_model_bound_is_at_least_one_batch(tmp_path):
    from edge_sdk.runtime.model_meta import InputSpec

    case = make_oracle(tmp_path, num_frames=5, people=1, video=None, input_spec=InputSpec(height=96, width=128,
                                                                                        batch=3))
    counter = _Counter()
    sink = _CountingSink(counter)
    backend = load_backend(model=case.model_path)
    pipeline = Pipeline(backend, _CountingSource(case, counter, 10), [sink], decoder=tiny_decode, max_in_flight=1)
    stats = pipeline.run()
    assert [m["seq"] for m in sink.messages] == list(range(10))
    assert stats.max_in_flight == 3 and counter.peak <= 3


def test_credits():
    credits = Credits(2)
    assert credits.try_acquire() and credits.try_acquire() and not credits.try_acquire()
    stop = threading.Event()
    stop.set()
    assert credits.acquire(stop=stop) is False  # full and stopping: gives up
    credits.release(2)
    assert credits.acquire() and credits.in_flight == 1 and credits.peak == 2


@pytest.mark.parametrize("value, words", [
    ("0", "at least 1"), ("-3", "at least 1"), (0, "at least 1"), ("abc", "whole number"), ("2.5", "whole number"),
    ("", "whole number"), (None, "whole number"),
])
def test_bad_max_in_flight_is_one_line(value, words):
    with pytest.raises(ConfigError) as info:
        check_max_in_flight(value)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_good_max_in_flight():
    assert check_max_in_flight("3") == 3 and check_max_in_flight(1) == 1 and check_max_in_flight(2.0) == 2


def test_run_pipeline_and_bench_refuse_a_bad_bound_before_loading_anything():
    from edge_sdk.bench.runner import run_bench

    with pytest.raises(ConfigError, match="at least 1"):
        run_pipeline(model="does-not-exist.onnx", source="synthetic", max_in_flight=0, handle_signals=False)
    with pytest.raises(ConfigError, match="whole number"):
        run_bench(["does-not-exist.onnx"], frames=5, max_in_flight="x")


@pytest.mark.parametrize("command", ["run", "bench"])
@pytest.mark.parametrize("value", ["0", "many"])
def test_cli_bad_max_in_flight_is_one_error_line(edge_sdk_cli, oracle, command, value):
    extra = ["--source", "synthetic"] if command == "run" else ["--frames", "5"]
    proc = edge_sdk_cli(command, "--model", oracle.model_path, "--max-in-flight", value, *extra, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --max-in-flight"), proc.stderr
