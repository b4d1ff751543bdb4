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
    parser.add_argument("--mode", choices=("healthy", "silent", "crash"), default="healthy")
    parser.add_argument("--lifetime", type=float, default=120.0)  # never outlive a test run
    args, extra = parser.parse_known_args()  # the real runtime's options (source, broker, ...)
    if args.mode == "crash":
        print("fake runtime: crashing on purpose", file=sys.stderr)
        return 3
    import edge_sdk

    deadline = time.time() + args.lifetime
    frames = 0
    while time.time() < deadline:
        if args.mode == "healthy":
            frames += 1
            tmp = args.health_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"status": "running", "ts": time.time(), "frames": frames,
                           "runtime": os.path.abspath(edge_sdk.__file__), "bundle": args.bundle, "args": extra}, f)
            os.replace(tmp, args.health_file)
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
