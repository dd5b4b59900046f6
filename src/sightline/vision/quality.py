"""Face quality: how usable a face is for recognition, from its size, sharpness and pose.

All three factors are in [0, 1]; the overall score is their product, so one bad factor dominates.
Used to choose the best shot of a track and reported with every enrolled template.
"""

from __future__ import annotations

import math

import numpy as np

from sightline.types import Chip, Quality

#: box side (pixels) from which size no longer limits recognition (dlib chips are 150 px with padding)
FULL_SIZE_PX = 80.0
#: Laplacian variance giving sharpness 0.5 on a grey 150x150 chip
SHARPNESS_HALF = 60.0


def sharpness(chip: Chip) -> float:
    """Variance of the 4-neighbour Laplacian of the grey chip mapped to [0, 1) by v / (v + 60)."""
    g = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    v = float(lap.var())
    return v / (v + SHARPNESS_HALF)


def frontal(kps: np.ndarray) -> float:
    """1.0 for a frontal face; falls with yaw (nose off the eyes' midline) and roll (eye line tilt).

    kps: (5, 2) dlib 5-point landmarks. Yaw proxy: the nose's offset from the perpendicular
    bisector of the eyes, as a fraction of the eye distance (about 0.5 at a profile view).
    """
    right_eye = kps[0:2].mean(axis=0)
    left_eye = kps[2:4].mean(axis=0)
    nose = kps[4]
    axis = left_eye - right_eye
    dist = float(np.hypot(*axis))
    if dist < 1e-6:
        return 0.0
    u = axis / dist
    mid = (left_eye + right_eye) / 2
    yaw_ratio = abs(float(np.dot(nose - mid, u))) / dist
    roll_deg = abs(math.degrees(math.atan2(float(axis[1]), float(axis[0]))))
    roll_deg = min(roll_deg, 180 - roll_deg) if roll_deg > 90 else roll_deg
    yaw_f = max(0.0, 1.0 - 2.0 * yaw_ratio)
    roll_f = max(0.0, 1.0 - roll_deg / 90.0)
    return yaw_f * roll_f


def assess(size_px: float, kps: np.ndarray, chip: Chip | None) -> Quality:
    """Quality of one face. size_px: shorter side of its box in source pixels."""
    size_f = min(1.0, max(0.0, size_px / FULL_SIZE_PX))
    sharp = sharpness(chip) if chip is not None else 1.0
    front = frontal(kps)
    return Quality(size_px=float(size_px), sharpness=sharp, frontal=front, score=size_f * sharp * front)
