"""`edge-sdk bench`: measure the real runtime pipeline on the device (throughput, latency, resources).

Runs on the device, so it follows the runtime rules (Python 3.6, lean imports; matplotlib only for --plot).
"""
