"""The decoder under a real Python 3.6 (JetPack 4.6) with an old numpy gives exactly the 3.11 results.

Needs an interpreter: $EDGE_SDK_PY36 (e.g. a venv made with `python3.6 -m venv /tmp/py36 &&
/tmp/py36/bin/pip install numpy==1.19.5`) or a `python3.6` on PATH that imports numpy; skipped otherwise.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.runtime.decode import DecodeConfig, decode_peaks, decode_poses, find_peaks
from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.skeleton import coco17_to_coco18

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import python36  # noqa: E402
from test_decode import synthetic_crowd  # noqa: E402

REFINES = ("log_quadratic", "quadratic", "centroid", "none")

CHILD = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from edge_sdk.runtime.decode import DecodeConfig, decode_peaks, decode_poses, find_peaks
maps = np.load(sys.argv[2])
out = {}
for refine in %r:
    poses = decode_poses(maps["heatmaps"], maps["pafs"], DecodeConfig(refine=refine))
    out[refine + "_keypoints"], out[refine + "_scores"] = poses.keypoints, poses.scores
out["peaks_keypoints"] = decode_peaks(find_peaks(maps["heatmaps"]), maps["pafs"]).keypoints
np.savez(sys.argv[3], **out)
print(sys.version_info[:2], np.__version__)
""" % (REFINES,)


@pytest.mark.skipif(python36() is None, reason="no Python 3.6 with numpy (set EDGE_SDK_PY36)")
def test_python36_decodes_exactly_like_python3(tmp_path):
    truth = synthetic_crowd(np.random.default_rng(3), 12, 900, 700)
    truth[0, :3, 1] = 0.4  # a head on the top border: the one-sided sub-pixel fit
    heatmaps, pafs = render_maps(coco17_to_coco18(truth), 700, 900)
    np.savez(tmp_path / "maps.npz", heatmaps=heatmaps, pafs=pafs)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([python36(), str(script), str(REPO), str(tmp_path / "maps.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(3, 6)")
    old = np.load(tmp_path / "out.npz")
    for refine in REFINES:
        poses = decode_poses(heatmaps, pafs, DecodeConfig(refine=refine))
        assert len(poses) == 12
        np.testing.assert_allclose(old[refine + "_keypoints"], poses.keypoints, atol=1e-5)
        np.testing.assert_allclose(old[refine + "_scores"], poses.scores, atol=1e-6)
    np.testing.assert_allclose(old["peaks_keypoints"], decode_peaks(find_peaks(heatmaps), pafs).keypoints, atol=1e-5)
