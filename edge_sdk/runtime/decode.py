"""OpenPose part-affinity-field decoding: heatmaps + PAFs (or GPU-extracted peaks + PAFs) -> people.

API (the pipeline, eval, bench and calibration use exactly this):

``decode_poses(heatmaps, pafs, config=None) -> Poses``
    heatmaps [19, H, W], pafs [38, H, W] float arrays of ONE image (no batch axis).
``decode_peaks(peaks, pafs, config=None) -> Poses``
    peaks [18, K, 3] (x, y, score in map cells; score 0 = empty slot), from the GPU-side top-K pass.
``Poses``: ``keypoints`` float32 [P, 18, 3] (x, y, score) in MAP cells (score 0 = not found), and
``scores`` float32 [P]. ``Poses.to_frame(letterbox, stride)`` -> (keypoints17 [P, 17, 3] in frame pixels,
scores [P]) using skeleton.map_to_image and preprocess.Letterbox.input_to_frame.
"""
