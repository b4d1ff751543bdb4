"""A fresh clone with nothing beside it passes the tests that read the repository's data.

The suite once read photos and videos from a folder beside the repository; a clone in an empty directory
catches any test or module that reads outside the repository. A representative subset, not the whole suite
(that would double CI time): every data file kind (COCO photos + keypoints, crowd layouts, a video) and the
wheel builds.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUBSET = ["tests/test_decode_eval.py", "tests/test_calib_units.py::test_video_every_nth_frame",
          "tests/test_calib_units.py::test_coco_subset", "tests/test_packaging.py"]


def test_a_clone_with_nothing_beside_it_passes_the_data_tests(tmp_path):
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([git, "clone", "--quiet", "--no-local", str(REPO), str(empty / "edge-sdk")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    clone = empty / "edge-sdk"
    head = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, cwd=str(REPO)).stdout
    assert subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=str(clone)).stdout == head
    assert os.listdir(str(empty)) == ["edge-sdk"]  # nothing beside the clone
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_SDK_CACHE")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"] + SUBSET,
                          capture_output=True, text=True, cwd=str(clone), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-500:]
    assert os.listdir(str(empty)) == ["edge-sdk"]  # and nothing was written beside it
