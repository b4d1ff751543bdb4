"""Host-side test helpers that other tools reuse (needs the ``[host]`` extra: onnx).

:mod:`edge_sdk.testing.oracle_model`: an ONNX "oracle model" whose outputs are maps rendered from known
keypoints, with the matching video and the expected keypoints, so the whole runtime (source, preprocess,
backend, decoder, sinks, MQTT) can be checked end to end against exact answers.
"""

from edge_sdk.testing.oracle_model import (
    OracleCase,
    build_oracle_model,
    frame_color,
    make_oracle,
    oracle_frame,
    oracle_people,
    write_oracle_images,
    write_oracle_video,
)

__all__ = ["OracleCase", "build_oracle_model", "frame_color", "make_oracle", "oracle_frame", "oracle_people",
           "write_oracle_images", "write_oracle_video"]
