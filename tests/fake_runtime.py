"""Stand-in for `edge-sdk run` on a test device: writes the health file the real runtime writes, or never does.

It imports edge_sdk from its PYTHONPATH and records where it came from, so a test can check that the service
runs the runtime installed for this version (versions/<v>/site), not the test's checkout.
"""

import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--health-file", required=True)
    parser.add_argument("--bundle", required=True)
    # flaky: healthy for 1.5 s, then exits; slow: healthy at 0.5 fps
    parser.add_argument("--mode", choices=("healthy", "silent", "crash", "flaky", "slow"), default="healthy")
    parser.add_argument("--lifetime", type=float, default=120.0)  # never outlive a test run
    args, extra = parser.parse_known_args()  # the real runtime's options (source, broker, ...)
    if args.mode == "crash":
        print("fake runtime: crashing on purpose", file=sys.stderr)
        return 3
    import edge_sdk

    deadline = time.time() + args.lifetime
    frames = 0
    started = time.time()
    while time.time() < deadline:
        if args.mode == "flaky" and time.time() - started > 1.5:
            print("fake runtime: flaky, giving up", file=sys.stderr)
            return 4
        if args.mode in ("healthy", "flaky", "slow"):
            frames += 1
            tmp = args.health_file + ".tmp"
            data = {"status": "running", "ts": time.time(), "frames": frames,
                    "runtime": os.path.abspath(edge_sdk.__file__), "bundle": args.bundle, "args": extra}
            if args.mode == "slow":
                data["fps"] = 0.5
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, args.health_file)
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
