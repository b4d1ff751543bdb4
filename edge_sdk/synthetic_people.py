"""Synthetic people: images of articulated figures with exact COCO-17 keypoints, no download needed.

Training uses them when no data set is given (``edge-sdk train --data synthetic``), tests overfit on them,
and ``bench --source synthetic`` feeds them to a device. Each figure has plausible limb proportions
(in units of its height), a random pose, a face when it looks at the camera (so left and right can be
told apart), clothing colours; several per image, drawn far-to-near so that they occlude each other,
plus random occluders over varied backgrounds.

Keypoints follow COCO: ``[x, y, v]`` in pixels, v = 2 visible, 1 labelled but hidden (behind another
person or an occluder), 0 not labelled (outside the image, or the face of a figure seen from behind).
numpy + OpenCV only, Python 3.6 syntax: this module runs on the device too.
"""

import math

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover - reported where a synthetic source is used
    cv2 = None

from edge_sdk.runtime.skeleton import COCO17_PARTS

_K = {name: i for i, name in enumerate(COCO17_PARTS)}

# Limb proportions as fractions of the figure height (after anthropometric tables, rounded).
PROPORTIONS = {
    "shoulder_half": (0.10, 0.13),
    "hip_half": (0.06, 0.085),
    "torso": (0.27, 0.32),
    "upper_arm": (0.16, 0.19),
    "forearm": (0.14, 0.16),
    "thigh": (0.22, 0.25),
    "shin": (0.21, 0.24),
    "head_up": (0.09, 0.11),
}

SKIN_TONES = [(60, 90, 140), (80, 120, 170), (100, 150, 200), (130, 175, 225), (150, 190, 235), (45, 65, 95)]


class SyntheticSample:
    """One synthetic image: ``image`` BGR uint8 [H, W, 3], ``keypoints`` float32 [P, 17, 3] (COCO-17,
    pixels, v in {0, 1, 2}), ``boxes`` float32 [P, 4] (x, y, w, h) and COCO-like ``areas`` float32 [P]."""

    def __init__(self, image, keypoints, boxes, areas):
        self.image = image
        self.keypoints = keypoints
        self.boxes = boxes
        self.areas = areas


def _rot(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def _down(angle):
    """Unit vector pointing down (image y) turned by ``angle`` radians (positive = towards +x)."""
    return np.array([math.sin(angle), math.cos(angle)], dtype=np.float64)


class SyntheticPeople:
    """A deterministic generator: ``sample(i)`` always returns the same image for the same seed and i."""

    def __init__(self, width=384, height=256, people=(1, 4), seed=0, occluders=True, min_height=0.3,
                 max_height=0.95):
        if cv2 is None:
            raise ImportError("synthetic people need OpenCV (pip install opencv-python-headless)")
        self.width = int(width)
        self.height = int(height)
        self.people = (int(people[0]), int(people[1]))
        self.seed = int(seed)
        self.occluders = bool(occluders)
        self.min_height = float(min_height)
        self.max_height = float(max_height)

    def __iter__(self):
        index = 0
        while True:
            yield self.sample(index)
            index += 1

    def sample(self, index):
        """The ``index``-th image of this generator."""
        rng = np.random.RandomState((self.seed * 1000003 + int(index)) % (2 ** 32))
        image = _background(rng, self.height, self.width)
        labels = np.zeros((self.height, self.width), dtype=np.uint8)
        count = rng.randint(self.people[0], self.people[1] + 1)
        figures = [self._random_figure(rng) for _ in range(count)]
        figures.sort(key=lambda f: f["size"])  # far (small) first, near (large) drawn over them
        for pid, figure in enumerate(figures, start=1):
            _draw_figure(image, labels, figure, pid)
        if self.occluders and rng.rand() < 0.5:
            for _ in range(rng.randint(1, 3)):
                _draw_occluder(rng, image, labels)
        keypoints = np.zeros((count, 17, 3), dtype=np.float32)
        boxes = np.zeros((count, 4), dtype=np.float32)
        areas = np.zeros((count,), dtype=np.float32)
        for pid, figure in enumerate(figures, start=1):
            keypoints[pid - 1] = self._visibility(figure, labels, pid)
            boxes[pid - 1], areas[pid - 1] = self._box_and_area(figure)
        if self.occluders and rng.rand() < 0.3:
            image = cv2.GaussianBlur(image, (3, 3), 0)
        noise = rng.randint(-6, 7, size=image.shape)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return SyntheticSample(image, keypoints, boxes, areas)

    def _box_and_area(self, figure):
        """The figure's box (joints padded by its limb thickness, clipped to the image) and a COCO-like area:
        half the box, as for the silhouette of a real person. (The painted pixels of a stick figure would
        make the OKS tolerance, which scales with sqrt(area), far stricter than on COCO.)"""
        pad = 0.07 * figure["size"]
        lo = np.maximum(figure["joints"].min(axis=0) - pad, 0.0)
        hi = np.minimum(figure["joints"].max(axis=0) + pad, [self.width - 1.0, self.height - 1.0])
        w, h = max(0.0, hi[0] - lo[0]), max(0.0, hi[1] - lo[1])
        return [lo[0], lo[1], w, h], 0.5 * w * h

    def _visibility(self, figure, labels, pid):
        kp = np.zeros((17, 3), dtype=np.float32)
        for j in range(17):
            x, y = figure["joints"][j]
            if not figure["labelled"][j]:
                continue
            if x < 0 or y < 0 or x > self.width - 1 or y > self.height - 1:
                continue
            xi, yi = int(round(x)), int(round(y))
            kp[j] = (x, y, 2.0 if labels[yi, xi] == pid else 1.0)
        return kp

    def _random_figure(self, rng):
        size = self.height * rng.uniform(self.min_height, self.max_height)
        p = {k: rng.uniform(lo, hi) * size for k, (lo, hi) in PROPORTIONS.items()}
        facing = rng.rand() < 0.8  # looking at the camera: its left side is on the image's right
        side = 1.0 if facing else -1.0  # +x direction of the figure's LEFT side in the image
        yaw = rng.uniform(0.55, 1.0)  # foreshortening of the shoulders/hips when turned
        lean = rng.normal(0.0, 0.08) if rng.rand() < 0.85 else rng.uniform(-0.6, 0.6)
        tilt = rng.normal(0.0, 0.15)
        rot = _rot(lean)
        neck = np.zeros(2)
        torso_down = rot.dot([0.0, p["torso"]])
        across = rot.dot([1.0, 0.0])
        j = {}
        j["left_shoulder"] = neck + across * p["shoulder_half"] * yaw * side
        j["right_shoulder"] = neck - across * p["shoulder_half"] * yaw * side
        pelvis = neck + torso_down
        j["left_hip"] = pelvis + across * p["hip_half"] * yaw * side
        j["right_hip"] = pelvis - across * p["hip_half"] * yaw * side
        head = _rot(lean + tilt)
        j["nose"] = neck + head.dot([0.0, -p["head_up"]])
        eye_dx, eye_dy = 0.028 * size * yaw, -0.025 * size
        ear_dx, ear_dy = 0.055 * size * yaw, -0.005 * size
        for name, dx, dy in (("eye", eye_dx, eye_dy), ("ear", ear_dx, ear_dy)):
            j["left_" + name] = j["nose"] + head.dot([dx * side, dy])
            j["right_" + name] = j["nose"] + head.dot([-dx * side, dy])
        for s, sgn in (("left", side), ("right", -side)):
            # arm: shoulder angle away from the body (0 = hanging down), elbow flex either way
            a1 = lean + sgn * rng.uniform(-0.35, 2.8)
            a2 = a1 + sgn * rng.uniform(-0.4, 2.4) * (1 if rng.rand() < 0.7 else -1)
            j[s + "_elbow"] = j[s + "_shoulder"] + _down(a1) * p["upper_arm"]
            j[s + "_wrist"] = j[s + "_elbow"] + _down(a2) * p["forearm"]
            # leg: hip abduction / raise, knee bends backwards (seen from the front: shin goes down)
            h1 = lean + sgn * rng.uniform(-0.25, 0.55) if rng.rand() < 0.85 else lean + sgn * rng.uniform(-1.2, 1.4)
            k2 = h1 - sgn * rng.uniform(-0.1, 0.9)
            j[s + "_knee"] = j[s + "_hip"] + _down(h1) * p["thigh"]
            j[s + "_ankle"] = j[s + "_knee"] + _down(k2) * p["shin"]
        roll = rng.normal(0.0, 0.12) if rng.rand() < 0.9 else rng.uniform(-1.0, 1.0)
        whole = _rot(roll)
        pts = np.array([whole.dot(j[name]) for name in COCO17_PARTS])
        # place the figure: its box centre anywhere in (a slightly enlarged) image
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre = np.array([rng.uniform(-0.05, 1.05) * self.width, rng.uniform(0.1, 0.9) * self.height])
        pts = pts - (lo + hi) / 2.0 + centre
        labelled = np.ones(17, dtype=bool)
        if not facing:
            labelled[[_K["nose"], _K["left_eye"], _K["right_eye"]]] = False
        skin = np.array(SKIN_TONES[rng.randint(len(SKIN_TONES))]) + rng.randint(-15, 16, 3)
        return {
            "joints": pts, "labelled": labelled, "size": size, "facing": facing,
            "skin": tuple(int(c) for c in np.clip(skin, 0, 255)),
            "shirt": tuple(int(c) for c in rng.randint(0, 256, 3)),
            "pants": tuple(int(c) for c in rng.randint(0, 256, 3)),
            "sleeves": rng.rand() < 0.5,
            "hair": tuple(int(c) for c in rng.randint(0, 90, 3)),
        }


def _pt(p):
    return int(round(p[0])), int(round(p[1]))


def _draw_figure(image, labels, figure, pid):
    """Draw limbs, torso and head into ``image`` and the person id into ``labels``."""
    j = {name: figure["joints"][i] for i, name in enumerate(COCO17_PARTS)}
    size = figure["size"]

    def limb(a, b, width, colour):
        thickness = max(1, int(round(width * size)))
        cv2.line(image, _pt(j[a]), _pt(j[b]), colour, thickness, cv2.LINE_AA)
        cv2.line(labels, _pt(j[a]), _pt(j[b]), pid, thickness)

    def disc(centre, radius, colour):
        r = max(1, int(round(radius)))
        cv2.circle(image, _pt(centre), r, colour, -1, cv2.LINE_AA)
        cv2.circle(labels, _pt(centre), r, pid, -1)

    arm_colour = figure["shirt"] if figure["sleeves"] else figure["skin"]
    for s in ("left", "right"):
        limb(s + "_hip", s + "_knee", 0.075, figure["pants"])
        limb(s + "_knee", s + "_ankle", 0.06, figure["pants"])
        disc(j[s + "_ankle"], 0.03 * size, (30, 30, 30))
    torso = np.array([_pt(j[n]) for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")],
                     dtype=np.int32)
    centre = torso.mean(axis=0)
    torso = np.round(centre + (torso - centre) * 1.15).astype(np.int32)  # shoulders and hips have flesh
    cv2.fillPoly(image, [torso], figure["shirt"], cv2.LINE_AA)
    cv2.fillPoly(labels, [torso], pid)
    neck = (j["left_shoulder"] + j["right_shoulder"]) / 2.0
    limb_neck_colour = figure["skin"]
    thickness = max(1, int(round(0.045 * size)))
    cv2.line(image, _pt(neck), _pt(j["nose"]), limb_neck_colour, thickness, cv2.LINE_AA)
    cv2.line(labels, _pt(neck), _pt(j["nose"]), pid, thickness)
    head_centre = (j["left_ear"] + j["right_ear"]) / 2.0 * 0.6 + j["nose"] * 0.4
    head_radius = 0.065 * size
    disc(head_centre, head_radius, figure["hair"] if not figure["facing"] else figure["skin"])
    if figure["facing"]:
        eye_r = max(1, int(round(0.012 * size)))
        for eye in ("left_eye", "right_eye"):
            cv2.circle(image, _pt(j[eye]), eye_r, (20, 20, 20), -1, cv2.LINE_AA)
        cv2.circle(image, _pt(j["nose"]), max(1, eye_r - 1), (40, 60, 140), -1, cv2.LINE_AA)
        top = head_centre + (head_centre - j["nose"]) * 0.9
        cv2.circle(image, _pt(top), max(1, int(round(head_radius * 0.7))), figure["hair"], -1, cv2.LINE_AA)
    for ear in ("left_ear", "right_ear"):
        disc(j[ear], 0.018 * size, figure["skin"])
    for s in ("left", "right"):
        limb(s + "_shoulder", s + "_elbow", 0.05, figure["shirt"])
        limb(s + "_elbow", s + "_wrist", 0.04, arm_colour)
        disc(j[s + "_wrist"], 0.022 * size, figure["skin"])


def _draw_occluder(rng, image, labels):
    h, w = labels.shape
    colour = tuple(int(c) for c in rng.randint(0, 256, 3))
    cx, cy = rng.randint(0, w), rng.randint(0, h)
    rx, ry = int(rng.uniform(0.04, 0.2) * w), int(rng.uniform(0.04, 0.25) * h)
    if rng.rand() < 0.5:
        cv2.rectangle(image, (cx - rx, cy - ry), (cx + rx, cy + ry), colour, -1)
        cv2.rectangle(labels, (cx - rx, cy - ry), (cx + rx, cy + ry), 255, -1)
    else:
        cv2.ellipse(image, (cx, cy), (rx, ry), rng.uniform(0, 180), 0, 360, colour, -1)
        cv2.ellipse(labels, (cx, cy), (rx, ry), rng.uniform(0, 180), 0, 360, 255, -1)


def _background(rng, height, width):
    """A varied background: gradients, blurred noise textures, stripes, clutter shapes."""
    kind = rng.randint(4)
    c0 = rng.randint(0, 256, 3).astype(np.float32)
    c1 = rng.randint(0, 256, 3).astype(np.float32)
    if kind == 0:  # linear gradient
        t = np.linspace(0.0, 1.0, width if rng.rand() < 0.5 else height, dtype=np.float32)
        t = t[None, :, None] if len(t) == width else t[:, None, None]
        image = np.broadcast_to(c0 * (1 - t) + c1 * t, (height, width, 3))
    elif kind == 1:  # blurred noise texture
        small = rng.rand(max(2, height // 16), max(2, width // 16), 1).astype(np.float32)
        t = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]
        image = c0 * (1 - t) + c1 * t
    elif kind == 2:  # stripes / tiles
        period = rng.randint(8, 48)
        yy, xx = np.mgrid[0:height, 0:width]
        t = (((xx // period) + (yy // period if rng.rand() < 0.5 else 0)) % 2).astype(np.float32)[:, :, None]
        image = c0 * (1 - t) + c1 * t
    else:  # flat
        image = np.broadcast_to(c0, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8).copy()
    for _ in range(rng.randint(0, 8)):  # clutter (not people: no keypoints)
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        x, y = rng.randint(0, width), rng.randint(0, height)
        r = int(rng.uniform(0.02, 0.15) * min(height, width)) + 1
        shape = rng.randint(3)
        if shape == 0:
            cv2.circle(image, (x, y), r, colour, -1)
        elif shape == 1:
            cv2.rectangle(image, (x, y), (x + 2 * r, y + r), colour, -1)
        else:
            cv2.line(image, (x, y), (rng.randint(0, width), rng.randint(0, height)), colour, rng.randint(1, 6))
    return image


def to_coco(samples, file_names=None):
    """COCO keypoints ground truth (dict) for a list of samples; image ids are 1-based positions."""
    images, annotations = [], []
    for i, sample in enumerate(samples, start=1):
        h, w = sample.image.shape[:2]
        name = file_names[i - 1] if file_names else "synthetic_{:06d}.png".format(i)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for p in range(len(sample.keypoints)):
            kp = sample.keypoints[p]
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                "keypoints": [float(v) for v in kp.reshape(-1)],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "bbox": [float(v) for v in sample.boxes[p]], "area": float(sample.areas[p]),
            })
    return {
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17_PARTS),
                        "skeleton": [[a + 1, b + 1] for a, b in _coco_skeleton()]}],
    }


def _coco_skeleton():
    from edge_sdk.runtime.skeleton import COCO17_SKELETON
    return COCO17_SKELETON


def write_dataset(directory, count, width=384, height=256, seed=1, people=(1, 4)):
    """Write ``count`` synthetic images (PNG) and their COCO ground truth ``person_keypoints.json`` into
    ``directory`` (a data set layout that ``edge-sdk eval`` and ``--data coco:DIR`` read). Returns the json path."""
    import json
    import os

    generator = SyntheticPeople(width=width, height=height, people=people, seed=seed)
    images_dir = os.path.join(str(directory), "images")
    if not os.path.isdir(images_dir):
        os.makedirs(images_dir)
    samples, names = [], []
    for index in range(int(count)):
        sample = generator.sample(index)
        name = "synthetic_{:06d}.png".format(index + 1)
        cv2.imwrite(os.path.join(images_dir, name), sample.image)
        samples.append(sample)
        names.append(name)
    path = os.path.join(str(directory), "person_keypoints.json")
    with open(path, "w") as f:
        json.dump(to_coco(samples, names), f)
    return path
