"""The host side of a fleet's poses: record them (SQLite / PostgreSQL), query them, watch them live.

``recorder`` (``edge-sdk record``), ``query`` (``edge-sdk query``), ``dashboard`` (``edge-sdk dashboard``);
see docs/ingest.md. Host only (Python 3.10+); nothing here is imported by the on-device runtime.
"""
