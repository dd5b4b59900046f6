"""dlib's MMOD CNN face detector with the network in ONNX Runtime (the fast backend).

The whole of ``dlib.cnn_face_detection_model_v1(path)(image, upsample)`` is reproduced:

1. ``upsample`` times, ``pyramid_up`` with ``pyramid_down<2>``: the image grows to
   ``(lround(2*(rows-0.25)) + 1, lround(2*(cols+0.25)) + 1)`` by dlib's bilinear resize (truncating
   to uint8).
2. dlib's tiled image pyramid (``input_rgb_image_pyramid<pyramid_down<6>>``): the normalised
   image ``(pixel - avg) / 256`` and every 5/6 downscale of it down to 5 rows, packed into one
   zero-filled canvas (first a column of levels under each other, then the small ones doubled back
   from the bottom right), 10 px between levels and 11 px around. Each level is a bilinear resize
   (corners onto corners) of the previous one. ``dlib_resize`` reproduces dlib's float32 arithmetic
   bit for bit; the detector uses onnxruntime's Resize instead (6x faster, within ~1e-3 of a grey
   level of dlib's, which itself drifts by accumulating sample positions in float32).
3. The network (ONNX), giving a score map; ``score > adjust_threshold`` marks a detection.
4. Score-map cell (c, r) -> canvas point (8c + 14, 8r + 14) -> an 80x80 window centred there ->
   the pyramid level nearest that point -> ``p * 6/5 + 0.3`` once per level down -> rounded box.
5. dlib's non-maximum suppression (strongest first; a box is dropped if its overlap with a kept box,
   intersection over the *bounding box of both*, inclusive pixel areas, exceeds ~0.34), then the
   box is mapped back through the upsampling (``p / 2 - (1.25, 0.75)`` per step) and rounded.

Boxes equal dlib's, scores within ~1e-4 (measured: identical boxes on 27 photos, 3e-5 largest score
difference). Cost on one core: ~55 ms per 640x480 frame, ~160 ms at 1280x720 (dlib-bin: ~1.2 s and
~4 s); the canvas holds about 3.8x the frame's pixels, and each upsample step costs ~4x.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sightline.types import Faces, Image
from sightline.vision.backends import dlib_format as df
from sightline.vision.backends.models import MMOD, model_path
from sightline.vision.backends.onnx_build import build_resize, load_or_build
from sightline.vision.backends.onnx_runtime import CPU, Session, make_session
from sightline.vision.detect import FaceDetector, detectors

logger = logging.getLogger(__name__)

if importlib.util.find_spec("onnxruntime") is None:  # no runtime: leave this backend unregistered
    raise ModuleNotFoundError("onnxruntime is not installed", name="onnxruntime")

#: pyramid_down<6>: each level is 5/6 of the previous one
PYRAMID_N = 6
#: dlib stops the pyramid when a level would have fewer rows than this
MIN_LEVEL_ROWS = 5


@dataclass(frozen=True)
class Rect:
    """A dlib rectangle: inclusive integer corners."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


def _lround(x: npt.ArrayLike) -> np.ndarray:
    """C's lround: halves away from zero (Python's round() rounds halves to even)."""
    a = np.asarray(x, dtype=np.float64)
    return (np.sign(a) * np.floor(np.abs(a) + 0.5)).astype(np.int64)


def pyramid_layout(rows: int, cols: int, padding: int = 10, outer_padding: int = 11) -> tuple[list[Rect], int, int]:
    """dlib's ``compute_tiled_image_pyramid_details`` for pyramid_down<6>.

    Returns the level rectangles in canvas pixels (level 0 = the image itself) and the canvas
    (rows, cols).
    """
    if rows * cols == 0:
        return [], 0, 0
    rate = (PYRAMID_N - 1.0) / PYRAMID_N
    sizes = [(rows, cols)]
    nr, nc = rows, cols
    while True:
        nr, nc = int(np.floor(rate * nr)), int(np.floor(rate * nc))
        if nr * nc == 0 or nr < MIN_LEVEL_ROWS:
            break
        sizes.append((nr, nc))

    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    w0, h0 = sizes[0][1], sizes[0][0]
    for h, w in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    canvas_rows, canvas_cols = height + 2 * outer_padding, w0 + 2 * outer_padding

    rects: list[Rect] = []
    y, i = outer_padding, 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append(Rect(outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        h, w = sizes[i]
        x1, y1 = outer_padding + w0 - 1, y - 1
        rect = Rect(x1 - (w - 1), y1 - (h - 1), x1, y1)
        if not (
            rect.right < first.left or rect.left > first.right or rect.bottom < first.top or rect.top > first.bottom
        ):
            break  # would overlap the full-size image
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, canvas_rows, canvas_cols


def _axis_positions(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row sampling of dlib's resize_image: position, lower index, upper index (double)."""
    scale = (n_in - 1) / max(n_out - 1, 1)
    pos = np.cumsum(np.concatenate(([-scale], np.full(n_out, scale))))[1:]  # dlib: y += scale
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return pos, lo, hi


def _simd_columns(n_in: int, n_out: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The columns dlib's 4-lane SIMD loop computes: count, left index, float32 fraction."""
    scale = (n_in - 1) / max(n_out - 1, 1)
    groups = (n_out + 3) // 4 + 1
    x0 = -4 * scale
    steps = np.empty((groups + 1, 4), np.float32)
    steps[0] = np.array([x0 + j * scale for j in range(4)], np.float32)
    steps[1:] = np.float32(4 * scale)
    xs = np.cumsum(steps, axis=0, dtype=np.float32)[1:]  # float32 accumulation, lane by lane
    left = np.trunc(xs).astype(np.int64)
    bad = np.nonzero(left[:, 3] + 1 >= n_in)[0]
    count = 4 * int(bad[0]) if len(bad) else 4 * groups
    left, xs = left.reshape(-1)[:count], xs.reshape(-1)[:count]
    frac = (xs - left.astype(np.float32)).astype(np.float32)
    return count, left, frac


def dlib_resize(src: np.ndarray, rows: int, cols: int, out: np.ndarray | None = None) -> np.ndarray:
    """dlib's bilinear ``resize_image`` of a planar image (C, h, w), float32 or uint8.

    Corners map to corners (scale = (in-1)/(out-1)). The arithmetic follows dlib's SSE path
    (float32 weights, lane-wise float32 position accumulation) and its scalar tail, so that the
    result is bit-for-bit dlib's in almost every pixel; uint8 results are truncated, as dlib does.
    """
    is_u8 = src.dtype == np.uint8
    c_in, h, w = src.shape
    if out is None:
        out = np.empty((c_in, rows, cols), src.dtype)
    if rows == 0 or cols == 0 or h == 0 or w == 0:
        return out
    ypos, top, bottom = _axis_positions(h, rows)
    tb = ypos - top  # double
    tb32 = tb.astype(np.float32)[:, None]
    inv_tb32 = (1.0 - tb).astype(np.float32)[:, None]
    count, left, lr = _simd_columns(w, cols)
    count = min(count, cols)
    srcf = src.astype(np.float32, copy=False)
    rows_t = srcf[:, top, :]
    rows_b = srcf[:, bottom, :]
    if count:
        lft, lr = left[:count], lr[:count]
        inv_lr = (np.float32(1) - lr).astype(np.float32)
        acc = (inv_tb32 * inv_lr) * rows_t[:, :, lft]
        acc += (inv_tb32 * lr) * rows_t[:, :, lft + 1]
        acc += (tb32 * inv_lr) * rows_b[:, :, lft]
        acc += (tb32 * lr) * rows_b[:, :, lft + 1]
        if is_u8:
            out[:, :, :count] = np.trunc(acc).astype(np.uint8)
        else:
            out[:, :, :count] = acc
    if count < cols:
        scale = (w - 1) / max(cols - 1, 1)
        x = np.cumsum(np.concatenate(([-scale + count * scale], np.full(cols - count, scale))))[1:]
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, w - 1)
        tbd = tb[:, None]
        if is_u8:
            f = x - lo
            top_v = (1 - f) * rows_t[:, :, lo].astype(np.float64) + f * rows_t[:, :, hi]
            bot_v = (1 - f) * rows_b[:, :, lo].astype(np.float64) + f * rows_b[:, :, hi]
            out[:, :, count:] = np.trunc((1 - tbd) * top_v + tbd * bot_v).astype(np.uint8)
        else:
            f32 = (x - lo).astype(np.float32)
            inv = np.float32(1) - f32
            top_v = inv * rows_t[:, :, lo] + f32 * rows_t[:, :, hi]
            bot_v = inv * rows_b[:, :, lo] + f32 * rows_b[:, :, hi]
            out[:, :, count:] = ((1 - tbd) * top_v + tbd * bot_v).astype(np.float32)
    return out


def pyramid_up(image: Image) -> Image:
    """dlib's ``pyramid_up(img, pyramid_down<2>)``: about 2x larger, (H, W, 3) uint8 RGB."""
    rows, cols = image.shape[:2]
    # rect_up of (0, 0, cols-1, rows-1): (p + (1.25, 0.75)) * 2, rounded; size = bottom+1, right+1
    out_cols = int(_lround(2 * (cols - 1 + 1.25))) + 1
    out_rows = int(_lround(2 * (rows - 1 + 0.75))) + 1
    planar = np.ascontiguousarray(image.transpose(2, 0, 1))
    return np.ascontiguousarray(dlib_resize(planar, out_rows, out_cols).transpose(1, 2, 0))


Resizer = Callable[[np.ndarray, int, int, np.ndarray], object]


def build_pyramid(image: Image, spec: df.InputSpec, resize: Resizer | None = None) -> tuple[np.ndarray, list[Rect]]:
    """The tiled pyramid tensor (1, 3, R, C) float32 of dlib's input layer, and its level rects.

    resize(src (3, h, w) float32, rows, cols, out (3, rows, cols) view) fills ``out``; the default
    is ``dlib_resize`` (dlib's exact arithmetic, ~6x slower than onnxruntime's Resize).
    """
    rows, cols = image.shape[:2]
    rects, cr, cc = pyramid_layout(rows, cols, spec.pyramid_padding, spec.pyramid_outer_padding)
    canvas = np.zeros((1, 3, cr, cc), np.float32)
    if not rects:
        return canvas, rects
    r0 = rects[0]
    avg = np.asarray(spec.avg_rgb, np.float32).reshape(3, 1, 1)
    lvl = canvas[0, :, r0.top : r0.bottom + 1, r0.left : r0.right + 1]
    np.subtract(image.transpose(2, 0, 1), avg, out=lvl, dtype=np.float32)
    lvl *= np.float32(1 / 256)
    resize = resize or dlib_resize
    for prev, cur in itertools.pairwise(rects):
        src = canvas[0, :, prev.top : prev.bottom + 1, prev.left : prev.right + 1]
        dst = canvas[0, :, cur.top : cur.bottom + 1, cur.left : cur.right + 1]
        resize(src, cur.height, cur.width, dst)
    return canvas, rects


def nearest_level(rects: list[Rect], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's ``nearest_rect`` for integer points: the first level containing the point, else the
    first one at the smallest Euclidean distance."""
    r = np.array([[q.left, q.top, q.right, q.bottom] for q in rects], np.int64)
    x, y = np.asarray(x, np.int64)[:, None], np.asarray(y, np.int64)[:, None]
    inside = (r[:, 0] <= x) & (x <= r[:, 2]) & (r[:, 1] <= y) & (y <= r[:, 3])
    dist = np.hypot(np.clip(x, r[:, 0], r[:, 2]) - x, np.clip(y, r[:, 1], r[:, 3]) - y)
    return np.where(inside.any(axis=1), np.argmax(inside, axis=1), np.argmin(dist, axis=1))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, covered: float = 1.0) -> np.ndarray:
    """dlib's loss_mmod non-maximum suppression (``test_box_overlap``) -> kept indices, strongest
    first. boxes (N, 4) are inclusive integer rects (l, t, r, b); a box is dropped when, against a kept
    box, intersection / area of the *bounding box of both* > ``iou``, or intersection / either
    area > ``covered``. Areas count pixels inclusively ((r - l + 1) * (b - t + 1))."""
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(b[k, 2], b[i, 2]) - np.maximum(b[k, 0], b[i, 0]) + 1
            ih = np.minimum(b[k, 3], b[i, 3]) - np.maximum(b[k, 1], b[i, 1]) + 1
            inner = (np.clip(iw, 0, None) * np.clip(ih, 0, None)).astype(np.float64)
            outer = (np.maximum(b[k, 2], b[i, 2]) - np.minimum(b[k, 0], b[i, 0]) + 1) * (
                np.maximum(b[k, 3], b[i, 3]) - np.minimum(b[k, 1], b[i, 1]) + 1
            )
            hit = (inner > 0) & ((inner / outer > iou) | (inner / area[k] > covered) | (inner / area[i] > covered))
            if hit.any():
                continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


@detectors.register("mmod-onnx")
class OnnxMmodDetector(FaceDetector):
    """MMOD CNN detector, dlib's results at ONNX Runtime speed. ``score`` is the MMOD confidence.

    upsample:         times the image is doubled first (dlib's pyramid_up); the smallest face found
                      is ~40 px, ~20 px with upsample=1, at ~4x the time per step.
    threads:          intra-op CPU threads, 0 = all cores this process may use.
    providers:        onnxruntime providers to try first; None picks TensorRT/CUDA when available
                      and working, else CPU. ``provider`` says which runs.
    adjust_threshold: added to the detection threshold (0 = dlib's); negative finds more, weaker faces.
    """

    name = "mmod-onnx"

    def __init__(
        self,
        upsample: int = 0,
        threads: int = 0,
        providers: Sequence[str] | None = None,
        adjust_threshold: float = 0.0,
        **_: object,
    ) -> None:
        if not 0 <= upsample <= 3:
            raise ValueError(f"upsample must be in [0, 3], got {upsample}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = all cores), got {threads}")
        self.upsample = upsample
        self.adjust_threshold = float(adjust_threshold)
        net = df.read_mmod(model_path(MMOD))  # small (0.7 MB): the input and loss settings
        self._input = net.input
        assert isinstance(net.loss, df.MmodLoss)
        self._loss = net.loss
        self._window = net.loss.windows[0]
        self._stride, self._offset = _output_to_input(net.layers)
        self._min_input = _min_input_size(net.layers)
        self._session = make_session(load_or_build("mmod").data, threads=threads, providers=providers)
        self.provider = self._session.provider
        self.threads = self._session.threads
        # the pyramid levels are resized on the CPU by onnxruntime (~5 ms per 640x480 frame, numpy ~30)
        resize = make_session(build_resize().SerializeToString(), threads=threads, providers=[CPU])
        self._resize = _OrtResizer(resize)

    def detect(self, image: Image) -> Faces:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        for _ in range(self.upsample):
            img = pyramid_up(img)
        rows, cols = img.shape[:2]
        if min(rows, cols) + 2 * self._input.pyramid_outer_padding < self._min_input:
            return Faces.empty()  # smaller than the network's receptive field (dlib raises)
        canvas, rects = build_pyramid(np.ascontiguousarray(img), self._input, self._resize)
        if not rects:
            return Faces.empty()
        scores = self._session.run({"pyramid": canvas})[0][0, 0]
        rr, cc = np.nonzero(scores > self.adjust_threshold)
        if len(rr) == 0:
            return Faces.empty()
        conf = scores[rr, cc].astype(np.float64)
        boxes = self._to_image(cc, rr, rects)
        keep = nms(boxes, conf, *self._loss.overlaps_nms)
        boxes, conf = boxes[keep].astype(np.float64), conf[keep]
        for _ in range(self.upsample):  # pyramid_down<2>::rect_down, rounded like dlib's rectangle
            boxes = boxes / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])
        if self.upsample:
            boxes = _lround(boxes)
        xyxy = boxes.astype(np.float32) + np.array([0, 0, 1, 1], np.float32)
        return Faces(xyxy, conf.astype(np.float32))

    def _to_image(self, cols: np.ndarray, rows: np.ndarray, rects: list[Rect]) -> np.ndarray:
        """Score-map cells -> inclusive int rects (l, t, r, b) in the (upsampled) image."""
        px = cols.astype(np.int64) * self._stride + self._offset
        py = rows.astype(np.int64) * self._stride + self._offset
        # the window's centre is (px, py) itself, an integer point: it picks the pyramid level
        level = nearest_level(rects, px, py)
        origin = np.array([[rects[k].left, rects[k].top] for k in level], np.float64).reshape(-1, 2)
        hw, hh = (self._window.width - 1) / 2, (self._window.height - 1) / 2
        corners = np.stack([px - hw, py - hh, px + hw, py + hh], axis=1) - np.tile(origin, 2)
        up = PYRAMID_N / (PYRAMID_N - 1.0)
        for step in range(int(level.max(initial=0))):  # pyramid_down<6>::point_up, once per level
            m = level > step
            corners[m] = corners[m] * up + 0.3
        return _lround(corners)


class _OrtResizer:
    """``build_pyramid``'s resize through an onnxruntime Resize session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __call__(self, src: np.ndarray, rows: int, cols: int, out: np.ndarray) -> None:
        sizes = np.array([1, src.shape[0], rows, cols], np.int64)
        out[...] = self._session.run({"x": np.ascontiguousarray(src)[None], "sizes": sizes})[0][0]


def _min_input_size(layers: tuple[df.Layer, ...]) -> int:
    """The smallest input side for which a conv stack still gives one output cell (29 for MMOD)."""
    n = 1
    for layer in reversed(layers):
        if isinstance(layer, df.Conv):
            n = (n - 1) * layer.stride[0] + layer.weight.shape[2] - 2 * layer.padding[0]
    return max(n, 1)


def _output_to_input(layers: tuple[df.Layer, ...]) -> tuple[int, int]:
    """dlib's output_tensor_to_input_tensor for a conv stack: input = stride * output + offset."""
    stride, offset = 1, 0
    for layer in reversed(layers):
        if isinstance(layer, df.Conv):
            kw = layer.weight.shape[3]
            sx, px = layer.stride[1], layer.padding[1]
            offset = offset * sx - px + kw // 2
            stride *= sx
    return stride, offset
