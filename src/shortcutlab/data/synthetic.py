"""Procedural handwritten-like digits: a tiny, offline, deterministic stand-in for MNIST.

Tests and demos need a source that exists on every machine and builds in milliseconds.
Each digit is a set of strokes (polylines) drawn with a random affine jitter and stroke
width, anti-aliased, on a 28x28 canvas like MNIST's. It is not MNIST: results on it say
nothing about the study, but every stage runs on it the same way.
"""

from __future__ import annotations

import numpy as np


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float,
         points: int = 14) -> list[tuple[float, float]]:
    angles = np.linspace(np.radians(start), np.radians(stop), points)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# Strokes in a unit box (x to the right, y downwards); angles in degrees, 0 = right, 90 = down.
_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(0.5, 0.5, 0.2, 0.32, 0, 360, 24)],
    1: [[(0.42, 0.28), (0.54, 0.18), (0.54, 0.82)]],
    2: [[*_arc(0.5, 0.35, 0.2, 0.17, 200, 380), (0.3, 0.82), (0.72, 0.82)]],
    3: [_arc(0.48, 0.34, 0.19, 0.16, 210, 450), _arc(0.48, 0.66, 0.21, 0.17, 270, 510)],
    4: [[(0.62, 0.82), (0.62, 0.18), (0.28, 0.62), (0.76, 0.62)]],
    5: [[(0.7, 0.18), (0.34, 0.18), (0.32, 0.48), *_arc(0.49, 0.64, 0.21, 0.19, 230, 490)]],
    6: [[(0.66, 0.2), (0.42, 0.4), *_arc(0.5, 0.65, 0.19, 0.18, 200, 560, 24)]],
    7: [[(0.28, 0.2), (0.72, 0.2), (0.46, 0.84)]],
    8: [_arc(0.5, 0.33, 0.16, 0.15, 0, 360, 20), _arc(0.5, 0.66, 0.2, 0.18, 0, 360, 20)],
    9: [_arc(0.5, 0.36, 0.18, 0.17, 0, 360, 20), [(0.68, 0.36), (0.62, 0.84)]],
}


def _segments(digit: int) -> np.ndarray:
    """(S, 2, 2) array of line segments (start, end) x (x, y)."""
    segments = []
    for stroke in _STROKES[digit]:
        points = np.asarray(stroke, dtype=np.float64)
        segments.append(np.stack([points[:-1], points[1:]], axis=1))
    return np.concatenate(segments, axis=0)


def render_digits(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Render one uint8 (N, size, size) image per label (white strokes on black)."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((labels.shape[0], size, size), dtype=np.uint8)
    grid = (np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1) + 0.5)
    grid = grid.reshape(1, -1, 1, 2)  # (1, P, 1, 2) pixel centers (x, y)
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        if index.size == 0:
            continue
        count = index.size
        segments = _segments(digit) - 0.5  # centered unit box
        angle = rng.uniform(-0.25, 0.25, count)
        scale = rng.uniform(17.0, 21.0, count)
        shear = rng.uniform(-0.25, 0.25, count)
        shift = rng.uniform(-1.5, 1.5, (count, 2)) + size / 2
        width = rng.uniform(1.0, 1.7, count)
        cos, sin = np.cos(angle), np.sin(angle)
        matrix = np.stack([np.stack([cos, -sin + shear * cos], -1),
                           np.stack([sin, cos + shear * sin], -1)], axis=1) * scale[:, None, None]
        ends = np.einsum("nij,sej->nsei", matrix, segments) + shift[:, None, None, :]
        # one segment at a time and x, y apart: the (N, P, S, 2) intermediates of a single
        # broadcast were most of the time; the arithmetic is the same, operation by
        # operation, and the minimum over segments is exact, so the bytes do not change
        distance = np.full((count, grid.shape[1]), np.inf)
        pixel_x, pixel_y = grid[:, :, 0, 0], grid[:, :, 0, 1]  # (1, P)
        for segment in range(ends.shape[1]):
            start_x, start_y = ends[:, segment, 0, 0, None], ends[:, segment, 0, 1, None]
            step_x = ends[:, segment, 1, 0, None] - start_x       # (N, 1)
            step_y = ends[:, segment, 1, 1, None] - start_y
            length2 = np.maximum(step_x * step_x + step_y * step_y, 1e-9)
            t = np.clip(((pixel_x - start_x) * step_x + (pixel_y - start_y) * step_y)
                        / length2, 0.0, 1.0)
            off_x = pixel_x - (start_x + t * step_x)
            off_y = pixel_y - (start_y + t * step_y)
            np.minimum(distance, np.sqrt(off_x * off_x + off_y * off_y), out=distance)
        intensity = np.clip(width[:, None] + 0.5 - distance, 0.0, 1.0)
        out[index] = np.round(intensity * 255).astype(np.uint8).reshape(count, size, size)
    return out


def synthetic_source(train_size: int = 6000, test_size: int = 1000,
                     seed: int = 12345) -> dict[str, np.ndarray]:
    """A source in the same layout as MNIST's (train/test images uint8 and labels int64)."""
    rng = np.random.default_rng(seed)
    train_labels = np.arange(train_size, dtype=np.int64) % 10
    test_labels = np.arange(test_size, dtype=np.int64) % 10
    rng.shuffle(train_labels)
    rng.shuffle(test_labels)
    return {
        "train_images": render_digits(train_labels, rng),
        "train_labels": train_labels,
        "test_images": render_digits(test_labels, rng),
        "test_labels": test_labels,
    }
