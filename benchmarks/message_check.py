"""What checking every received message costs: ``parse_pose_payload`` against parsing alone.

For pose payloads of 1, 10 and 50 people (JSON and compact), it times, interleaved and repeated:

- baseline (JSON): ``json.loads`` of the payload, nothing checked;
- baseline (compact): ``messages.decode_compact``, the layout decoded, values not checked;
- checked: ``message_check.parse_pose_payload`` (parse + schema + bounds + finite numbers + clipping).

and prints ms per message (best of each round; the range over rounds) and the checked/baseline ratio::

    python benchmarks/message_check.py [--rounds 7] [--number 200]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_sdk.runtime import message_check, messages  # noqa: E402


def payloads(people: int) -> dict:
    rng = np.random.RandomState(people)
    kps = rng.rand(people, 17, 3) * [1900, 1060, 1]
    msg = messages.build_pose_message("cam-01", 7, 1764000000.0, 1920, 1080, "rtsp-cam", messages.people_to_json(
        kps, rng.rand(people)), {"capture": 0.4, "preprocess": 1.2, "infer": 7.5, "decode": 2.0, "total": 11.8})
    return {"json": messages.encode_json(msg), "compact": messages.encode_compact(msg)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args()
    print("{:>6} {:>8} {:>7} {:>22} {:>22} {:>14}".format("people", "encoding", "bytes", "baseline ms (range)",
                                                       "checked ms (range)", "checked/base"))
    for people in (1, 10, 50):
        for encoding, payload in payloads(people).items():
            baseline = functools.partial(json.loads if encoding == "json" else messages.decode_compact, payload)
            checked = functools.partial(message_check.parse_pose_payload, payload, "cam-01")
            times = {"baseline": [], "checked": []}
            for _ in range(args.rounds):  # interleaved: both see the same machine load
                for name, function in (("baseline", baseline), ("checked", checked)):
                    times[name].append(timeit.timeit(function, number=args.number) / args.number * 1000)
            base, chk = min(times["baseline"]), min(times["checked"])
            print("{:>6} {:>8} {:>7} {:>22} {:>22} {:>14}".format(
                people, encoding, len(payload),
                "{:.3f} ({:.3f}-{:.3f})".format(base, min(times["baseline"]), max(times["baseline"])),
                "{:.3f} ({:.3f}-{:.3f})".format(chk, min(times["checked"]), max(times["checked"])),
                "{:.2f}x".format(chk / base)))


if __name__ == "__main__":
    main()
