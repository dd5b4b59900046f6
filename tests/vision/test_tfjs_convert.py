"""TFJS graph -> ONNX conversion, op by op, on tiny synthetic graphs checked against numpy references."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sightline.vision.backends import tfjs

RNG = np.random.default_rng(7)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class GraphWriter:
    """Writes a TFJS graph model (model.json + one weight shard) the way tensorflowjs_converter does."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        dims = [{"size": str(d)} for d in input_shape]
        self.nodes: list[dict] = [
            {
                "name": "x",
                "op": "Placeholder",
                "attr": {"shape": {"shape": {"dim": dims}}, "dtype": {"type": "DT_FLOAT"}},
            }
        ]
        self.specs: list[dict] = []
        self.blobs: list[bytes] = []

    def const(self, name: str, arr: np.ndarray, quant: str | None = None) -> str:
        arr = np.asarray(arr)
        spec: dict = {"name": name, "shape": list(arr.shape), "dtype": "int32" if arr.dtype.kind == "i" else "float32"}
        if quant == "float16":
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            self.blobs.append(arr.astype("<f2").tobytes())
        elif quant == "uint8":
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255 or 1.0
            q = np.round((arr - lo) / scale).astype(np.uint8)
            spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale, "original_dtype": "float32"}
            self.blobs.append(q.tobytes())
        else:
            self.blobs.append(arr.astype("<i4" if arr.dtype.kind == "i" else "<f4").tobytes())
        self.specs.append(spec)
        self.nodes.append({"name": name, "op": "Const", "attr": {}})
        return name

    def op(self, name: str, op: str, inputs: list[str], **attr: object) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def write(self, folder: Path, outputs: list[str]) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "w.bin").write_bytes(b"".join(self.blobs))
        doc = {
            "format": "graph-model",
            "modelTopology": {"node": self.nodes},
            "weightsManifest": [{"paths": ["w.bin"], "weights": self.specs}],
            "signature": {"outputs": {o: {"name": o} for o in outputs}},
        }
        path = folder / "model.json"
        path.write_text(json.dumps(doc))
        return path


def _run(path: Path, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    model = tfjs.convert(tfjs.read_tfjs(path), outputs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def ref_conv(x: np.ndarray, w: np.ndarray, stride: int, padding: str, depthwise: bool = False) -> np.ndarray:
    """NHWC convolution as TF computes it (w: HWIO, or HWCM for depthwise)."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    if padding == "SAME":
        (pt, pb), (pl, pr) = _same_pads(h, kh, stride), _same_pads(wd, kw, stride)
    else:
        pt = pb = pl = pr = 0
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    if depthwise:
        m = w.shape[3]
        out = np.zeros((n, oh, ow, c * m))
    else:
        out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]  # n kh kw c
            if depthwise:
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w).reshape(n, -1)
            else:
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def case_conv(stride: int, padding: str, size: int = 7):
    def build(tmp: Path):
        w = _x((3, 3, 3, 4))
        g = GraphWriter((-1, size, size, 3))
        g.const("k", w)
        g.op("y", "Conv2D", ["x", "k"], strides={"list": {"i": ["1", str(stride), str(stride), "1"]}},
             padding={"s": _b64(padding)}, data_format={"s": _b64("NHWC")})  # fmt: skip
        x = _x((2, size, size, 3))
        return g.write(tmp, ["y"]), x, ref_conv(x, w, stride, padding)

    return build


def case_depthwise(stride: int, multiplier: int):
    def build(tmp: Path):
        w = _x((3, 3, 4, multiplier))
        g = GraphWriter((-1, 8, 8, 4))
        g.const("k", w)
        g.op("y", "DepthwiseConv2dNative", ["x", "k"], strides={"list": {"i": ["1", str(stride), str(stride), "1"]}},
             padding={"s": _b64("SAME")})  # fmt: skip
        x = _x((1, 8, 8, 4))
        return g.write(tmp, ["y"]), x, ref_conv(x, w, stride, "SAME", depthwise=True)

    return build


def case_binary(op: str, const_shape: tuple[int, ...], fn):
    def build(tmp: Path):
        c = _x(const_shape) if const_shape else np.array(0.3, np.float32)
        g = GraphWriter((-1, 5, 5, 4))
        g.const("c", c)
        g.op("y", op, ["x", "c"])
        x = _x((2, 5, 5, 4))
        return g.write(tmp, ["y"]), x, fn(x, c)

    return build


def case_unary(op: str, fn, rank4: bool = True):
    def build(tmp: Path):
        shape = (2, 3, 3, 4) if rank4 else (3, 6)
        g = GraphWriter((-1, *shape[1:]))
        g.op("y", op, ["x"])
        x = _x(shape) * 4
        return g.write(tmp, ["y"]), x, fn(x)

    return build


def case_mean(keep: bool):
    def build(tmp: Path):
        g = GraphWriter((-1, 4, 5, 3))
        g.const("axes", np.array([1, 2], np.int32))
        g.op("y", "Mean", ["x", "axes"], keep_dims={"b": keep})
        x = _x((2, 4, 5, 3))
        return g.write(tmp, ["y"]), x, x.mean(axis=(1, 2), keepdims=keep)

    return build


def case_fused_matmul(fused: list[str], quant: str | None = None, transpose_b: bool = False):
    def build(tmp: Path):
        w, b = _x((6, 5)), _x((5,))
        g = GraphWriter((-1, 6))
        g.const("w", w.T.copy() if transpose_b else w, quant)
        g.const("b", b, quant)
        g.op("y", "_FusedMatMul", ["x", "w", "b"], fused_ops={"list": {"s": [_b64(f) for f in fused]}},
             transpose_b={"b": transpose_b})  # fmt: skip
        x = _x((3, 6))
        if quant == "float16":
            w, b = w.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
        y = x @ w + b
        if "Relu" in fused:
            y = np.maximum(y, 0)
        return g.write(tmp, ["y"]), x, y

    return build


def case_softmax():
    def build(tmp: Path):
        g = GraphWriter((-1, 7))
        g.op("y", "Softmax", ["x"])
        x = _x((2, 7))
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return g.write(tmp, ["y"]), x, e / e.sum(axis=1, keepdims=True)

    return build


def case_uint8_conv():
    def build(tmp: Path):
        w = _x((1, 1, 3, 2))
        g = GraphWriter((-1, 4, 4, 3))
        g.const("k", w, "uint8")
        g.op("y", "Conv2D", ["x", "k"], strides={"list": {"i": ["1", "1", "1", "1"]}}, padding={"s": _b64("VALID")})
        x = _x((1, 4, 4, 3))
        lo, scale = float(w.min()), (float(w.max()) - float(w.min())) / 255
        wq = lo + scale * np.round((w - lo) / scale)
        return g.write(tmp, ["y"]), x, ref_conv(x, wq, 1, "VALID")

    return build


CASES = {
    "conv_same_s1": case_conv(1, "SAME"),
    "conv_same_s2_odd": case_conv(2, "SAME", 7),
    "conv_same_s2_even": case_conv(2, "SAME", 8),
    "conv_valid_s2": case_conv(2, "VALID"),
    "depthwise_s1": case_depthwise(1, 1),
    "depthwise_s2_m2": case_depthwise(2, 2),
    "add_per_channel": case_binary("Add", (4,), lambda x, c: x + c),
    "biasadd": case_binary("BiasAdd", (4,), lambda x, c: x + c),
    "mul_per_channel": case_binary("Mul", (4,), lambda x, c: x * c),
    "sub_scalar": case_binary("Sub", (), lambda x, c: x - c),
    "minimum_scalar": case_binary("Minimum", (), np.minimum),
    "maximum_scalar": case_binary("Maximum", (), np.maximum),
    "add_nhwc_const": case_binary("Add", (1, 5, 5, 4), lambda x, c: x + c),
    "relu": case_unary("Relu", lambda x: np.maximum(x, 0)),
    "relu6": case_unary("Relu6", lambda x: np.clip(x, 0, 6)),
    "sigmoid_2d": case_unary("Sigmoid", lambda x: 1 / (1 + np.exp(-x)), rank4=False),
    "tanh": case_unary("Tanh", np.tanh),
    "mean_spatial": case_mean(False),
    "mean_spatial_keepdims": case_mean(True),
    "fused_matmul_bias": case_fused_matmul(["BiasAdd"]),
    "fused_matmul_bias_relu": case_fused_matmul(["BiasAdd", "Relu"]),
    "fused_matmul_float16": case_fused_matmul(["BiasAdd"], "float16"),
    "fused_matmul_transpose_b": case_fused_matmul(["BiasAdd"], transpose_b=True),
    "softmax": case_softmax(),
    "uint8_quantised_conv": case_uint8_conv(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference(tmp_path, case):
    path, x, want = CASES[case](tmp_path)
    (got,) = _run(path, x, ["y"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_chain_prunes_unused_heads(tmp_path):
    """conv -> relu6 -> mean -> matmul; an unrequested head (with an unsupported op) is not converted."""
    w, fc = _x((3, 3, 3, 4)), _x((4, 2))
    g = GraphWriter((-1, 6, 6, 3))
    g.const("k", w)
    g.const("axes", np.array([1, 2], np.int32))
    g.const("fc", fc)
    g.op("c", "Conv2D", ["x", "k"], strides={"list": {"i": ["1", "2", "2", "1"]}}, padding={"s": _b64("SAME")})
    g.op("r", "Relu6", ["c"])
    g.op("m", "Mean", ["r", "axes"])
    g.op("y", "MatMul", ["m", "fc"])
    g.op("head", "NotARealOp", ["m"])
    path = g.write(tmp_path, ["y"])
    x = _x((2, 6, 6, 3))
    (got,) = _run(path, x, ["y"])
    want = np.clip(ref_conv(x, w, 2, "SAME"), 0, 6).mean(axis=(1, 2)) @ fc
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(tfjs.UnsupportedOpError, match="NotARealOp"):
        tfjs.convert(tfjs.read_tfjs(path), ["head"])


def test_nhwc_output_is_transposed_back(tmp_path):
    g = GraphWriter((-1, 3, 4, 2))
    g.op("y", "Relu", ["x"])
    x = _x((1, 3, 4, 2))
    (got,) = _run(g.write(tmp_path, ["y"]), x, ["y"])
    np.testing.assert_array_equal(got, np.maximum(x, 0))


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d, p: p.write_bytes(p.read_bytes()[:-4]), "end inside"),
        (lambda d, p: p.write_bytes(p.read_bytes() + b"\0" * 8), "left over"),
        (lambda d, p: d.write_text("{not json"), "not a TFJS graph model"),
    ],
)
def test_malformed_models_are_refused(tmp_path, mutate, error):
    g = GraphWriter((-1, 4))
    g.const("w", _x((4, 2)))
    g.op("y", "MatMul", ["x", "w"])
    path = g.write(tmp_path, ["y"])
    mutate(path, tmp_path / "w.bin")
    with pytest.raises(tfjs.TfjsFormatError, match=error):
        tfjs.read_tfjs(path)
