"""Read dlib's binary network files (``dlib::serialize``) into typed layer records with numpy weights.

Only the two networks shipped by ``face_recognition_models`` are supported: the ResNet face
descriptor (``dlib_face_recognition_resnet_model_v1.dat``) and the MMOD CNN face detector
(``mmod_human_face_detector.dat``). Nothing here runs a network; ``onnx_build`` turns the records
into ONNX graphs.

The format (dlib/serialize.h, dlib/dnn/{core,layers,input,loss}.h, dlib/cuda/tensor.h):

- integer: a control byte (bit 0x80 = negative, low 4 bits = byte count, 1..8), then that many
  little-endian magnitude bytes. Unsigned integers use the same layout with the sign bit clear.
- float/double: an integer mantissa (int64) then an integer exponent (int16); the value is
  ``mantissa * 2**exponent``; exponents 32000/32001/32002 mean +inf/-inf/NaN.
- bool: the ASCII byte ``'1'`` or ``'0'``; uint8: one raw byte; string: an unsigned length, then bytes.
- tensor: int version (2), four int64 (n, k, nr, nc), then n*k*nr*nc float32 little-endian.
  alias_tensor (a view's shape only): int version (1), then four int64.
- a network: ``add_loss_layer`` writes its version, the loss details, then its sub-network.
  ``add_layer`` writes its version, then its *whole sub-network*, then its own details and a
  trailer (3 bools, then empty gradient/output tensors). Tag and skip layers write only a version
  and their sub-network. So the file holds: loss details, every wrapper's version from the output
  inwards, the input layer, then each layer's details from the input outwards. Because tag and skip
  layers leave no name in the file, the layer program must be known in advance; it is copied from
  dlib's examples (dnn_face_recognition_ex.cpp, dnn_mmod_face_detection_ex.cpp) below.

Trade-off: the programs are fixed, so a different network file fails with a ``DlibFormatError``
naming the offset and the layer, rather than being guessed at.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sightline.types import F32

logger = logging.getLogger(__name__)

FLOAT_INF = 32000
FLOAT_NINF = 32001
FLOAT_NAN = 32002


class DlibFormatError(ValueError):
    """The bytes are not the dlib network this reader expects; the message gives the offset."""


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------


def pack_int(value: int) -> bytes:
    """dlib's variable-length integer encoding of ``value`` (|value| < 2**64)."""
    neg = value < 0
    mag = -value if neg else value
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    if len(body) > 8:
        raise OverflowError(f"{value} does not fit in 8 bytes")
    return bytes([len(body) | (0x80 if neg else 0)]) + body


def pack_float(value: float) -> bytes:
    """dlib's encoding of a double: ``pack_int(mantissa) + pack_int(exponent)`` (float_details)."""
    if math.isnan(value):
        return pack_int(0) + pack_int(FLOAT_NAN)
    if math.isinf(value):
        return pack_int(0) + pack_int(FLOAT_INF if value > 0 else FLOAT_NINF)
    digits = 53
    frac, exp = math.frexp(value)
    mantissa = int(frac * (1 << digits))
    exponent = exp - digits
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return pack_int(mantissa) + pack_int(exponent)


class DlibReader:
    """A cursor over the bytes of a dlib-serialised object; each ``read_*`` advances it."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._buf = memoryview(data)
        self.pos = 0

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def remaining(self) -> int:
        return len(self._buf) - self.pos

    def _fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{what} at byte offset {self.pos} of {len(self._buf)}")

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._buf):
            raise self._fail(f"unexpected end of data reading {n} bytes")
        out = self._buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def read_int(self, *, signed: bool = True, max_bytes: int = 8) -> int:
        """One variable-length integer; ``max_bytes`` is sizeof(T) of the C++ type read into."""
        start = self.pos
        ctrl = self._take(1)[0]
        if signed:
            neg, size = bool(ctrl & 0x80), ctrl & 0x0F
        else:
            neg, size = False, ctrl & 0x8F
        if size == 0 or size > max_bytes:
            self.pos = start
            raise self._fail(f"invalid integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if neg else value

    def read_uint(self, max_bytes: int = 8) -> int:
        return self.read_int(signed=False, max_bytes=max_bytes)

    def read_float(self) -> float:
        """A float_details value as a Python float (double precision)."""
        mantissa = self.read_int(max_bytes=8)
        exponent = self.read_int(max_bytes=2)
        if exponent == FLOAT_INF:
            return math.inf
        if exponent == FLOAT_NINF:
            return -math.inf
        if exponent == FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_float32(self) -> float:
        """A float_details value read into a C++ ``float`` (mantissa rounded to float32 first)."""
        mantissa = self.read_int(max_bytes=8)
        exponent = self.read_int(max_bytes=2)
        if exponent >= FLOAT_INF:
            return {FLOAT_INF: math.inf, FLOAT_NINF: -math.inf}.get(exponent, math.nan)
        return float(np.float32(math.ldexp(float(np.float32(mantissa)), exponent)))

    def read_bool(self) -> bool:
        ch = self._take(1)[0]
        if ch == ord("1"):
            return True
        if ch == ord("0"):
            return False
        self.pos -= 1
        raise self._fail(f"invalid bool byte 0x{ch:02x}")

    def read_byte(self) -> int:
        return self._take(1)[0]

    def read_string(self) -> str:
        n = self.read_uint()
        raw = bytes(self._take(n))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            self.pos -= n
            raise self._fail("non-ASCII string") from None

    def read_tensor(self) -> F32:
        """A ``resizable_tensor``: returns (n, k, nr, nc) float32 (a copy, C-contiguous)."""
        version = self.read_int()
        if version != 2:
            raise self._fail(f"unexpected tensor version {version}")
        shape = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self._fail(f"negative tensor shape {shape}")
        count = math.prod(shape)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only a shape (n, k, nr, nc)."""
        version = self.read_int()
        if version != 1:
            raise self._fail(f"unexpected alias_tensor version {version}")
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return n, k, nr, nc

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            raise self._fail(what)


# ---------------------------------------------------------------------------------------------
# Layer records (input -> output order; weights as numpy float32)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution. weight (out, in, kh, kw) float32, bias (out,) float32 or None.

    stride/padding are (y, x) pixels; ``relu`` is dlib's fused ReLU (con_6 ``use_relu``).
    """

    weight: F32
    bias: F32 | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    relu: bool = False


@dataclass(frozen=True, eq=False)
class Affine:
    """Per-channel ``y = x * gamma + beta``; gamma/beta (C,) float32 (a batch-norm already folded)."""

    gamma: F32
    beta: F32


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    """Max or average pooling; kernel (0, 0) means the whole feature map (avg_pool_everything)."""

    kind: str  # "max" | "avg"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected: ``y = flatten(x) @ weight (+ bias)``; weight (in, out), bias (out,) or None."""

    weight: F32
    bias: F32 | None


@dataclass(frozen=True)
class Tag:
    """Remember the current output under ``id`` (dlib tagN)."""

    id: int


@dataclass(frozen=True)
class Skip:
    """Replace the current output by the one remembered under ``tag`` (dlib skipN)."""

    tag: int


@dataclass(frozen=True)
class AddPrev:
    """Add the output remembered under ``tag``; when shapes differ, both are zero-padded at the end
    of each axis to the larger size (dlib add_prevN)."""

    tag: int


Layer = Conv | Affine | Relu | Pool | Dense | Tag | Skip | AddPrev


@dataclass(frozen=True)
class InputSpec:
    """The input layer: ``(pixel - avg) / 256`` per channel, planar RGB.

    size: (rows, cols) for a fixed-size input, else None. The pyramid paddings (pixels) apply to
    ``input_rgb_image_pyramid`` only (0 otherwise).
    """

    kind: str  # "rgb_image_sized" | "rgb_image" | "rgb_image_pyramid"
    avg_rgb: tuple[float, float, float]
    size: tuple[int, int] | None = None
    pyramid_padding: int = 0
    pyramid_outer_padding: int = 0


@dataclass(frozen=True)
class MetricLoss:
    margin: float
    distance_threshold: float


@dataclass(frozen=True)
class DetectorWindow:
    width: int
    height: int
    label: str = ""


@dataclass(frozen=True)
class MmodLoss:
    """loss_mmod options. overlaps_nms: (iou_thresh, percent_covered_thresh) of dlib's test_box_overlap."""

    windows: tuple[DetectorWindow, ...]
    overlaps_nms: tuple[float, float]
    overlaps_ignore: tuple[float, float]
    use_bbr: bool = False


@dataclass(frozen=True)
class DlibNetwork:
    input: InputSpec
    layers: tuple[Layer, ...]
    loss: MetricLoss | MmodLoss


# ---------------------------------------------------------------------------------------------
# Layer programs (from dlib's examples)
# ---------------------------------------------------------------------------------------------


class _Op(NamedTuple):
    kind: str  # con | affine | relu | max_pool | avg_pool | tag | skip | add_prev | fc_no_bias
    a: int = 0  # filters / kernel / tag id / outputs
    b: int = 0  # kernel / stride
    c: int = 0  # stride


def _block(n: int, stride: int) -> list[_Op]:
    # block<N,BN,stride,SUB> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUB>>>>>
    return [_Op("con", n, 3, stride), _Op("affine"), _Op("relu"), _Op("con", n, 3, 1), _Op("affine")]


def _ares(n: int) -> list[_Op]:
    # relu<add_prev1<block<N,affine,1,tag1<SUB>>>>
    return [_Op("tag", 1), *_block(n, 1), _Op("add_prev", 1), _Op("relu")]


def _ares_down(n: int) -> list[_Op]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUB>>>>>>>
    return [
        _Op("tag", 1),
        *_block(n, 2),
        _Op("tag", 2),
        _Op("skip", 1),
        _Op("avg_pool", 2, 2),
        _Op("add_prev", 2),
        _Op("relu"),
    ]


def resnet_program() -> list[_Op]:
    """dnn_face_recognition_ex.cpp's ``anet_type``, input -> output."""
    ops = [_Op("con", 32, 7, 2), _Op("affine"), _Op("relu"), _Op("max_pool", 3, 2)]
    ops += _ares(32) * 3  # alevel4
    ops += _ares_down(64) + _ares(64) * 3  # alevel3
    ops += _ares_down(128) + _ares(128) * 2  # alevel2
    ops += _ares_down(256) + _ares(256) * 2  # alevel1
    ops += _ares_down(256)  # alevel0
    ops += [_Op("avg_pool", 0, 1), _Op("fc_no_bias", 128)]
    return ops


def mmod_program() -> list[_Op]:
    """dnn_mmod_face_detection_ex.cpp's ``net_type``, input -> output."""
    ops: list[_Op] = []
    for n in (16, 32, 32):  # downsampler: three con5d (5x5, stride 2) + affine + relu
        ops += [_Op("con", n, 5, 2), _Op("affine"), _Op("relu")]
    for _ in range(3):  # rcon5
        ops += [_Op("con", 45, 5, 1), _Op("affine"), _Op("relu")]
    ops.append(_Op("con", 1, 9, 1))
    return ops


# ---------------------------------------------------------------------------------------------
# Details readers
# ---------------------------------------------------------------------------------------------


def _default_padding(kernel: int, stride: int) -> int:
    return kernel // 2 if stride == 1 else 0


def _read_con(r: DlibReader, op: _Op) -> Conv:
    version = r.read_string()
    r.expect(version in ("con_4", "con_5", "con_6"), f"expected con_4..6, found {version!r}")
    params = r.read_tensor().reshape(-1)
    num_filters = r.read_int()
    nr, nc = r.read_int(), r.read_int()
    sy, sx = r.read_int(max_bytes=4), r.read_int(max_bytes=4)
    py, px = r.read_int(max_bytes=4), r.read_int(max_bytes=4)
    fshape = r.read_alias_tensor()
    bshape = r.read_alias_tensor()
    for _ in range(4):  # learning-rate / weight-decay multipliers
        r.read_float()
    use_bias = r.read_bool() if version in ("con_5", "con_6") else True
    use_relu = r.read_bool() if version == "con_6" else False
    filters, kernel, stride = op.a, op.b, op.c
    pad = _default_padding(kernel, stride)
    r.expect(
        (num_filters, nr, nc, sy, sx, py, px) == (filters, kernel, kernel, stride, stride, pad, pad),
        f"con layer is ({num_filters} filters, {nr}x{nc}, stride {sy},{sx}, pad {py},{px}), expected "
        f"({filters}, {kernel}x{kernel}, stride {stride}, pad {pad})",
    )
    fsize, bsize = math.prod(fshape), math.prod(bshape)
    r.expect(fshape[0] == filters and fshape[2:] == (kernel, kernel), f"bad filter shape {fshape}")
    r.expect(len(params) == fsize + bsize and bsize == filters, f"con params {len(params)} != {fsize}+{bsize}")
    weight = np.ascontiguousarray(params[:fsize].reshape(fshape))
    bias = np.ascontiguousarray(params[fsize:]) if use_bias else None
    return Conv(weight, bias, (sy, sx), (py, px), use_relu)


def _read_bn_as_affine(r: DlibReader, mode: str) -> Affine:
    """bn_con2/bn_fc2 in inference form: g = gamma / sqrt(running_var + eps), b = beta - g * mean."""
    params = r.read_tensor().reshape(-1)
    gshape = r.read_alias_tensor()
    r.read_alias_tensor()  # beta has gamma's shape
    r.read_tensor()  # means (batch statistics of the last training step)
    r.read_tensor()  # invstds
    running_means = r.read_tensor().reshape(-1)
    running_vars = r.read_tensor().reshape(-1)
    r.read_uint()  # num_updates
    r.read_uint()  # running_stats_window_size
    for _ in range(4):
        r.read_float()
    eps = r.read_float()
    n = math.prod(gshape)
    r.expect(len(params) == 2 * n and len(running_means) == n == len(running_vars), f"bad {mode} sizes")
    gamma = params[:n] / np.sqrt(running_vars + np.float32(eps))
    beta = params[n:] - gamma * running_means
    return Affine(gamma.astype(np.float32), beta.astype(np.float32))


def _read_affine(r: DlibReader) -> Affine:
    version = r.read_string()
    if version in ("bn_con2", "bn_fc2"):
        return _read_bn_as_affine(r, version)
    r.expect(version in ("affine_", "affine_2"), f"expected affine_ or bn_con2, found {version!r}")
    params = r.read_tensor().reshape(-1)
    gshape = r.read_alias_tensor()
    r.read_alias_tensor()
    r.read_int()  # mode (0 conv, 1 fc)
    disabled = r.read_bool() if version == "affine_2" else False
    n = math.prod(gshape)
    if disabled:
        return Affine(np.ones(n, np.float32), np.zeros(n, np.float32))
    r.expect(len(params) == 2 * n, f"affine params {len(params)} != 2*{n}")
    return Affine(np.ascontiguousarray(params[:n]), np.ascontiguousarray(params[n:]))


def _read_relu(r: DlibReader) -> Relu | None:
    version = r.read_string()
    r.expect(version in ("relu_", "relu_2"), f"expected relu_, found {version!r}")
    if version == "relu_2" and r.read_bool():
        return None  # disabled: identity
    return Relu()


def _read_pool(r: DlibReader, op: _Op) -> Pool:
    kind = "max" if op.kind == "max_pool" else "avg"
    version = r.read_string()
    r.expect(version == f"{kind}_pool_2", f"expected {kind}_pool_2, found {version!r}")
    nr, nc = r.read_int(), r.read_int()
    sy, sx = r.read_int(max_bytes=4), r.read_int(max_bytes=4)
    py, px = r.read_int(max_bytes=4), r.read_int(max_bytes=4)
    kernel, stride = op.a, op.b
    pad = _default_padding(kernel, stride) if kernel else 0
    r.expect(
        (nr, nc, sy, sx, py, px) == (kernel, kernel, stride, stride, pad, pad),
        f"{kind}_pool is {nr}x{nc}/{sy} pad {py}, expected {kernel}x{kernel}/{stride} pad {pad}",
    )
    return Pool(kind, (nr, nc), (sy, sx), (py, px))


def _read_fc(r: DlibReader, op: _Op) -> Dense:
    version = r.read_string()
    r.expect(version in ("fc_2", "fc_3"), f"expected fc_2 or fc_3, found {version!r}")
    num_outputs = r.read_uint()
    num_inputs = r.read_uint()
    params = r.read_tensor().reshape(-1)
    r.read_alias_tensor()
    r.read_alias_tensor()
    bias_mode = r.read_int(max_bytes=4)
    for _ in range(4):
        r.read_float()
    if version == "fc_3":
        r.read_bool()
    r.expect(num_outputs == op.a and bias_mode == 1, f"fc is {num_outputs} outputs, bias mode {bias_mode}")
    r.expect(len(params) == num_inputs * num_outputs, f"fc params {len(params)} != {num_inputs}x{num_outputs}")
    return Dense(np.ascontiguousarray(params.reshape(num_inputs, num_outputs)), None)


def _read_input(r: DlibReader) -> InputSpec:
    version = r.read_string()
    if version in ("input_rgb_image", "input_rgb_image_sized"):
        avg = (r.read_float32(), r.read_float32(), r.read_float32())
        if version == "input_rgb_image":
            return InputSpec("rgb_image", avg)
        nr, nc = r.read_uint(), r.read_uint()
        return InputSpec("rgb_image_sized", avg, (nr, nc))
    if version in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        avg = (r.read_float32(), r.read_float32(), r.read_float32())
        pad, outer = 10, 11  # dlib's defaults for files written before the paddings were saved
        if version == "input_rgb_image_pyramid2":
            pad, outer = r.read_uint(), r.read_uint()
        return InputSpec("rgb_image_pyramid", avg, None, pad, outer)
    raise r._fail(f"unsupported input layer {version!r}")


def _read_metric_loss(r: DlibReader) -> MetricLoss:
    version = r.read_string()
    if version == "loss_metric_":
        return MetricLoss(0.1, 0.75)
    r.expect(version == "loss_metric_2", f"expected loss_metric_2, found {version!r}")
    return MetricLoss(r.read_float32(), r.read_float32())


def _read_mmod_loss(r: DlibReader) -> MmodLoss:
    version = r.read_string()
    r.expect(version == "loss_mmod_", f"expected loss_mmod_, found {version!r}")
    opt_version = r.read_int()
    r.expect(1 <= opt_version <= 4, f"unexpected mmod_options version {opt_version}")
    if opt_version == 1:
        windows: tuple[DetectorWindow, ...] = (DetectorWindow(r.read_uint(), r.read_uint()),)
    else:
        count = r.read_uint()
        ws = []
        for _ in range(count):
            wv = r.read_int()
            r.expect(wv in (1, 2), f"unexpected detector window version {wv}")
            w, h = r.read_uint(), r.read_uint()
            ws.append(DetectorWindow(w, h, r.read_string() if wv == 2 else ""))
        windows = tuple(ws)
    r.read_float()  # loss_per_false_alarm
    r.read_float()  # loss_per_missed_target
    r.read_float()  # truth_match_iou_threshold
    nms = (r.read_float(), r.read_float())
    ignore = (r.read_float(), r.read_float())
    if opt_version >= 3:
        r.expect(r.read_byte() == 0, "only assume_image_pyramid=yes is supported")
    use_bbr = False
    if opt_version >= 4:
        use_bbr = r.read_bool()
        r.read_float()  # bbr_lambda
    r.expect(not use_bbr, "bounding-box regression is not supported")
    return MmodLoss(windows, nms, ignore, use_bbr)


def _skip_tensor(r: DlibReader) -> None:
    r.read_tensor()


def read_network(data: bytes | memoryview, program: list[_Op], loss: str) -> DlibNetwork:
    """Deserialise ``add_loss_layer<loss, program>`` from ``data``; ``loss`` is "metric" or "mmod"."""
    r = DlibReader(data)
    version = r.read_int()
    r.expect(version == 1, f"unexpected add_loss_layer version {version}")
    loss_rec: MetricLoss | MmodLoss = _read_metric_loss(r) if loss == "metric" else _read_mmod_loss(r)

    # Wrapper versions, from the output inwards. The innermost wrapper (program[0]) is the
    # add_layer specialised for an input-layer sub-network.
    versions: list[int] = []
    for i, op in enumerate(reversed(program)):
        v = r.read_int()
        innermost = i == len(program) - 1
        if op.kind in ("tag", "skip"):
            r.expect(v == 1, f"unexpected {op.kind} layer version {v}")
        elif innermost:
            r.expect(v in (2, 3), f"unexpected input add_layer version {v}")
        else:
            r.expect(v in (1, 2), f"unexpected add_layer version {v} for {op.kind}")
        versions.append(v)
    versions.reverse()

    inp = _read_input(r)

    layers: list[Layer] = []
    for i, (op, v) in enumerate(zip(program, versions, strict=True)):
        if op.kind == "tag":
            layers.append(Tag(op.a))
            continue
        if op.kind == "skip":
            layers.append(Skip(op.a))
            continue
        rec: Layer | None
        if op.kind == "con":
            rec = _read_con(r, op)
        elif op.kind == "affine":
            rec = _read_affine(r)
        elif op.kind == "relu":
            rec = _read_relu(r)
        elif op.kind in ("max_pool", "avg_pool"):
            rec = _read_pool(r, op)
        elif op.kind == "add_prev":
            name = r.read_string()
            r.expect(name == "add_prev_", f"expected add_prev_, found {name!r}")
            rec = AddPrev(op.a)
        elif op.kind == "fc_no_bias":
            rec = _read_fc(r, op)
        else:  # pragma: no cover - programs are defined above
            raise ValueError(op.kind)
        # trailer: this_layer_setup_called, gradient_input_is_stale, get_output_..._disabled
        for _ in range(3):
            r.read_bool()
        _skip_tensor(r)  # x_grad
        _skip_tensor(r)  # cached_output
        if i == 0:
            _skip_tensor(r)  # grad_final
            if v >= 3:
                r.read_int()  # _sample_expansion_factor
        elif v == 2:
            _skip_tensor(r)  # params_grad
        if rec is not None:
            layers.append(rec)
    if r.remaining:
        raise r._fail(f"{r.remaining} bytes left after the network")
    return DlibNetwork(inp, tuple(layers), loss_rec)


def read_resnet(path: str | Path) -> DlibNetwork:
    """dlib_face_recognition_resnet_model_v1.dat -> its layers (input 150x150 RGB, output 128-D)."""
    net = read_network(Path(path).read_bytes(), resnet_program(), "metric")
    if net.input.kind != "rgb_image_sized":
        raise DlibFormatError(f"{path}: expected a fixed-size input layer, found {net.input.kind}")
    logger.debug("read dlib ResNet %s: %d layers", path, len(net.layers))
    return net


def read_mmod(path: str | Path) -> DlibNetwork:
    """mmod_human_face_detector.dat -> its layers (input: tiled pyramid, output: 1-channel score map)."""
    net = read_network(Path(path).read_bytes(), mmod_program(), "mmod")
    if net.input.kind != "rgb_image_pyramid":
        raise DlibFormatError(f"{path}: expected an image-pyramid input layer, found {net.input.kind}")
    logger.debug("read dlib MMOD %s: %d layers", path, len(net.layers))
    return net
