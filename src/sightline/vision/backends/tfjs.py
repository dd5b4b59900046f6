"""Convert a TensorFlow.js graph model (``model.json`` + weight shards) to ONNX, in pure Python.

A TFJS graph model is a TensorFlow GraphDef written as JSON (``modelTopology.node``: name, op,
input, attr) plus a ``weightsManifest``: groups of binary shards (``paths``, read back to back)
holding every ``Const`` node's value in manifest order. A weight may be stored quantised:
``quantization.dtype`` float16 (read as IEEE half and widened to float32), or uint8/uint16 with
``scale`` and ``min`` (value = min + scale * q).

The converter emits only the nodes that the requested outputs depend on (a face model's age and
gender heads are dropped when only the embedding is asked for), NCHW inside: the NHWC input is
transposed once, 4-D activations stay NCHW ("channels-first") from then on, and per-channel
constants are reshaped to (1, C, 1, 1). Supported ops (those of common MobileNet-style graphs):
Placeholder, Const, Identity, Conv2D, DepthwiseConv2dNative, Add/AddV2/BiasAdd, Sub, Mul,
RealDiv, Minimum, Maximum, Relu, Relu6, Sigmoid, Tanh, Mean, MatMul, _FusedMatMul (BiasAdd +
optional Relu/Relu6/Sigmoid), Softmax. Anything else raises :class:`UnsupportedOpError` naming
the op and node, never a wrong graph.

TF "SAME" padding pads the extra pixel at the end (bottom/right); ONNX ``auto_pad=SAME_UPPER``
does the same.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

#: opset and IR version chosen for onnxruntime >= 1.18 (ReduceMean still takes axes as an attribute)
OPSET = 17
IR_VERSION = 8

_TF_DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}
_MANIFEST_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
#: NHWC axis -> NCHW axis
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


class TfjsFormatError(ValueError):
    """model.json or its weight shards are malformed or inconsistent."""


class UnsupportedOpError(NotImplementedError):
    """The graph uses an op this converter does not translate."""


@dataclass(frozen=True)
class TfjsGraph:
    """A parsed TFJS graph model: ``nodes`` in file order (GraphDef JSON dicts), ``weights`` by
    Const node name (dequantised float32 / int32 arrays) and the signature's input/output names."""

    nodes: tuple[dict, ...]
    weights: dict[str, np.ndarray]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _dequantise(raw: bytes, spec: dict) -> np.ndarray:
    shape = [int(s) for s in spec.get("shape", [])]
    q = spec.get("quantization")
    if q is None:
        dt = _MANIFEST_DTYPES.get(spec["dtype"])
        if dt is None:
            raise TfjsFormatError(f"weight {spec['name']!r}: unsupported dtype {spec['dtype']!r}")
        return np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    qd = q["dtype"]
    if qd == "float16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    if qd in ("uint8", "uint16"):
        ints = np.frombuffer(raw, dtype=np.uint8 if qd == "uint8" else "<u2").astype(np.float64)
        return (q["min"] + q["scale"] * ints).astype(np.float32).reshape(shape)
    raise TfjsFormatError(f"weight {spec['name']!r}: unsupported quantisation {qd!r}")


def _nbytes(spec: dict) -> int:
    n = int(np.prod([int(s) for s in spec.get("shape", [])], dtype=np.int64))
    q = spec.get("quantization")
    dt = q["dtype"] if q else spec["dtype"]
    size = {"float32": 4, "int32": 4, "bool": 1, "float16": 2, "uint8": 1, "uint16": 2}.get(dt)
    if size is None:
        raise TfjsFormatError(f"weight {spec.get('name')!r}: unsupported dtype {dt!r}")
    return n * size


def read_tfjs(model_json: Path) -> TfjsGraph:
    """Parse ``model_json`` and its weight shards (found next to it, as its manifest names them)."""
    model_json = Path(model_json)
    try:
        doc = json.loads(model_json.read_text())
        nodes = tuple(doc["modelTopology"]["node"])
        manifest = doc["weightsManifest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TfjsFormatError(f"{model_json}: not a TFJS graph model ({exc})") from exc
    if doc.get("format", "graph-model") != "graph-model":
        raise TfjsFormatError(f"{model_json}: format {doc.get('format')!r}, expected 'graph-model'")
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        off = 0
        for spec in group["weights"]:
            n = _nbytes(spec)
            if off + n > len(blob):
                raise TfjsFormatError(f"{model_json}: weight shards end inside {spec['name']!r}")
            weights[spec["name"]] = _dequantise(blob[off : off + n], spec)
            off += n
        if off != len(blob):
            raise TfjsFormatError(f"{model_json}: {len(blob) - off} bytes of weight shards left over")
    sig = doc.get("signature") or {}
    inputs = tuple(v["name"].split(":")[0] for v in (sig.get("inputs") or {}).values()) or tuple(
        n["name"] for n in nodes if n["op"] == "Placeholder"
    )
    outputs = tuple(v["name"].split(":")[0] for v in (sig.get("outputs") or {}).values())
    return TfjsGraph(nodes, weights, inputs, outputs)


# ---- attribute helpers -----------------------------------------------------------------------


def _attr_s(node: dict, key: str, default: str = "") -> str:
    v = node.get("attr", {}).get(key, {}).get("s")
    return default if v is None else base64.b64decode(v).decode()


def _attr_ints(node: dict, key: str) -> list[int] | None:
    v = node.get("attr", {}).get(key, {}).get("list", {}).get("i")
    return None if v is None else [int(x) for x in v]


def _attr_b(node: dict, key: str, default: bool = False) -> bool:
    return bool(node.get("attr", {}).get(key, {}).get("b", default))


def _attr_strs(node: dict, key: str) -> list[str]:
    v = node.get("attr", {}).get(key, {}).get("list", {}).get("s") or []
    return [base64.b64decode(x).decode() for x in v]


def _inline_const(node: dict) -> np.ndarray | None:
    """Value of a Const whose tensor is written inline in the JSON (small scalars), else None."""
    t = node.get("attr", {}).get("value", {}).get("tensor", {})
    dt = _TF_DTYPES.get(t.get("dtype", ""))
    shape = [int(d.get("size", 0)) for d in t.get("tensorShape", {}).get("dim", [])]
    if dt is None:
        return None
    for key in ("floatVal", "intVal", "int64Val", "boolVal"):
        if key in t:
            vals = np.asarray(t[key], dtype=dt)
            n = int(np.prod(shape)) if shape else 1
            return np.broadcast_to(vals, (n,)).reshape(shape).copy() if vals.size in (1, n) else None
    if "tensorContent" in t:
        return np.frombuffer(base64.b64decode(t["tensorContent"]), dtype=dt).reshape(shape).copy()
    return None


# ---- the converter -----------------------------------------------------------------------------


@dataclass
class _Val:
    """A converted tensor: its ONNX name, rank (None if unknown) and whether it is an NHWC
    activation held as NCHW; ``const`` holds the value of compile-time constants."""

    name: str
    rank: int | None
    nchw: bool = False
    const: np.ndarray | None = None


class _Converter:
    def __init__(self, graph: TfjsGraph, batch: str | int = "N") -> None:
        from onnx import numpy_helper

        self._np = numpy_helper
        self.g = graph
        self.by_name = {n["name"]: n for n in graph.nodes}
        self.nodes: list = []
        self.inits: list = []
        self.vals: dict[str, _Val] = {}
        self.inputs: list = []
        self.batch = batch
        self._n = 0

    # -- emission helpers
    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}__{self._n}"

    def _init(self, arr: np.ndarray, prefix: str) -> str:
        nm = self._name(prefix)
        self.inits.append(self._np.from_array(np.ascontiguousarray(arr), nm))
        return nm

    def _op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: object) -> str:
        from onnx import helper

        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def _operand(self, v: _Val, other: _Val) -> str:
        """Name to feed a binary op: a constant beside an NCHW activation is laid out to match."""
        if v.const is None:
            return v.name
        c = v.const.astype(np.float32) if v.const.dtype != np.float32 else v.const
        if other.nchw:
            if c.ndim == 1:
                c = c.reshape(1, -1, 1, 1)
            elif c.ndim == 4:
                c = c.transpose(0, 3, 1, 2)
            elif c.ndim not in (0,):
                raise UnsupportedOpError(f"constant of shape {c.shape} beside a 4-D activation")
        return self._init(c, "k")

    # -- graph walk
    def value(self, ref: str) -> _Val:
        name = ref.split(":")[0].lstrip("^")
        if ref.split(":")[-1] not in (name, "0") and ":" in ref:
            raise UnsupportedOpError(f"multi-output reference {ref!r}")
        if name not in self.vals:
            self._convert(name)
        return self.vals[name]

    def _convert(self, name: str) -> None:
        # iterative post-order so deep graphs do not hit the recursion limit
        stack = [name]
        while stack:
            top = stack[-1]
            if top in self.vals:
                stack.pop()
                continue
            node = self.by_name.get(top)
            if node is None:
                raise TfjsFormatError(f"node {top!r} is referenced but not defined")
            missing = [
                i.split(":")[0].lstrip("^")
                for i in node.get("input", [])
                if not i.startswith("^") and i.split(":")[0] not in self.vals
            ]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            self.vals[top] = self._emit(node)

    def _emit(self, node: dict) -> _Val:  # one branch per op
        op, name = node["op"], node["name"]
        ins = [self.vals[i.split(":")[0]] for i in node.get("input", []) if not i.startswith("^")]
        if op == "Const":
            arr = self.g.weights.get(name)
            if arr is None:
                arr = _inline_const(node)
            if arr is None:
                raise TfjsFormatError(f"Const {name!r} has no value in the weights or inline")
            return _Val(name, arr.ndim, const=arr)
        if op == "Placeholder":
            from onnx import TensorProto, helper

            dims = [int(d.get("size", -1)) for d in node["attr"]["shape"]["shape"].get("dim", [])]
            shape = [self.batch if i == 0 and d < 0 else (d if d >= 0 else None) for i, d in enumerate(dims)]
            self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
            if len(dims) == 4:
                return _Val(self._op("Transpose", [name], perm=[0, 3, 1, 2]), 4, nchw=True)
            return _Val(name, len(dims))
        if op == "Identity":
            return ins[0]
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            return self._conv(node, ins[0], ins[1])
        if op in ("Add", "AddV2", "BiasAdd", "Sub", "Mul", "RealDiv", "Minimum", "Maximum"):
            a, b = ins
            if a.const is not None and b.const is not None:
                raise UnsupportedOpError(f"{op} {name!r} of two constants (fold it before converting)")
            onnx_op = {"AddV2": "Add", "BiasAdd": "Add", "RealDiv": "Div", "Minimum": "Min", "Maximum": "Max"}.get(
                op, op
            )
            act = a if a.const is None else b
            out = self._op(onnx_op, [self._operand(a, b), self._operand(b, a)])
            return _Val(out, act.rank, act.nchw)
        if op in ("Relu", "Sigmoid", "Tanh"):
            return _Val(self._op(op, [ins[0].name]), ins[0].rank, ins[0].nchw)
        if op == "Relu6":
            return _Val(self._relu6(ins[0].name), ins[0].rank, ins[0].nchw)
        if op == "Mean":
            return self._mean(node, ins[0], ins[1])
        if op in ("MatMul", "_FusedMatMul"):
            return self._matmul(node, ins)
        if op == "Softmax":
            if ins[0].nchw:
                raise UnsupportedOpError(f"Softmax {name!r} over a 4-D activation")
            return _Val(self._op("Softmax", [ins[0].name], axis=-1), ins[0].rank)
        raise UnsupportedOpError(f"op {op!r} (node {name!r}) is not supported by the TFJS converter")

    def _relu6(self, x: str) -> str:
        lo = self._init(np.array(0, np.float32), "lo")
        hi = self._init(np.array(6, np.float32), "hi")
        return self._op("Clip", [x, lo, hi])

    def _conv(self, node: dict, x: _Val, w: _Val) -> _Val:
        if not x.nchw or w.const is None or w.const.ndim != 4:
            raise UnsupportedOpError(f"{node['op']} {node['name']!r}: needs a 4-D activation and a constant kernel")
        fmt = _attr_s(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise UnsupportedOpError(f"{node['op']} {node['name']!r}: data_format {fmt}")
        s = _attr_ints(node, "strides") or [1, 1, 1, 1]
        d = _attr_ints(node, "dilations") or [1, 1, 1, 1]
        k = w.const.astype(np.float32)
        kh, kw = k.shape[:2]
        attrs: dict[str, object] = {"kernel_shape": [kh, kw], "strides": [s[1], s[2]], "dilations": [d[1], d[2]]}
        if node["op"] == "DepthwiseConv2dNative":  # (H, W, C, M) -> (C*M, 1, H, W), group C
            c, m = k.shape[2:]
            weight = k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
            attrs["group"] = c
        else:  # (H, W, I, O) -> (O, I, H, W)
            weight = k.transpose(3, 2, 0, 1)
        pad = _attr_s(node, "padding", "VALID")
        if pad == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"
        elif pad == "EXPLICIT":
            p = _attr_ints(node, "explicit_paddings") or [0] * 8
            attrs["pads"] = [p[2], p[4], p[3], p[5]]
        elif pad != "VALID":
            raise UnsupportedOpError(f"{node['op']} {node['name']!r}: padding {pad}")
        out = self._op("Conv", [x.name, self._init(np.ascontiguousarray(weight), "w")], **attrs)
        return _Val(out, 4, nchw=True)

    def _mean(self, node: dict, x: _Val, axes_v: _Val) -> _Val:
        if axes_v.const is None:
            raise UnsupportedOpError(f"Mean {node['name']!r}: reduction indices must be constant")
        rank = x.rank or 4
        axes = sorted(int(a) % rank for a in np.atleast_1d(axes_v.const))
        keep = _attr_b(node, "keep_dims") or _attr_b(node, "keepDims")
        onnx_axes = sorted(_NHWC_TO_NCHW[a] for a in axes) if x.nchw else axes
        out = self._op("ReduceMean", [x.name], axes=onnx_axes, keepdims=int(keep))
        if keep:
            return _Val(out, rank, x.nchw)
        if x.nchw and not set(axes) >= {1, 2}:
            # dropping some but not all spatial axes changes NHWC order vs NCHW: go back to NHWC order
            raise UnsupportedOpError(f"Mean {node['name']!r}: reduces {axes} of a 4-D activation without keep_dims")
        return _Val(out, rank - len(axes))

    def _matmul(self, node: dict, ins: list[_Val]) -> _Val:
        a, b = ins[0], ins[1]
        if a.nchw:
            raise UnsupportedOpError(f"{node['op']} {node['name']!r}: input is a 4-D activation")
        ta, tb = _attr_b(node, "transpose_a"), _attr_b(node, "transpose_b")
        an = self._op("Transpose", [a.name], perm=[1, 0]) if ta else a.name
        if b.const is not None:
            bn = self._init((b.const.T if tb else b.const).astype(np.float32), "mm")
        else:
            bn = self._op("Transpose", [b.name], perm=[1, 0]) if tb else b.name
        y = self._op("MatMul", [an, bn])
        if node["op"] == "_FusedMatMul":
            fused = _attr_strs(node, "fused_ops")
            extra = ins[2:]
            for f in fused:
                if f == "BiasAdd":
                    if not extra:
                        raise TfjsFormatError(f"_FusedMatMul {node['name']!r}: BiasAdd without a bias input")
                    bias = extra.pop(0)
                    y = self._op("Add", [y, self._operand(bias, _Val(y, 2))])
                elif f == "Relu":
                    y = self._op("Relu", [y])
                elif f == "Relu6":
                    y = self._relu6(y)
                elif f == "Sigmoid":
                    y = self._op("Sigmoid", [y])
                else:
                    raise UnsupportedOpError(f"_FusedMatMul {node['name']!r}: fused op {f!r}")
        return _Val(y, 2)


def convert(
    graph: TfjsGraph,
    outputs: Sequence[str] | dict[str, str] | None = None,
    *,
    batch: str | int = "N",
    meta: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """ONNX model computing ``outputs`` of ``graph`` (default: its signature's outputs).

    outputs: TF node names, or a mapping TF node name -> ONNX output name. Inputs keep their TF
    names and NHWC float32 layout, batch dimension named ``batch``. Raises UnsupportedOpError /
    TfjsFormatError (the message names the node) for graphs it cannot translate faithfully.
    """
    import onnx
    from onnx import TensorProto, helper

    want = dict(outputs) if isinstance(outputs, dict) else {o: o for o in (outputs or graph.outputs)}
    if not want:
        raise ValueError("no outputs requested and the graph's signature names none")
    conv = _Converter(graph, batch)
    outs = []
    for tf_name, out_name in want.items():
        v = conv.value(tf_name)
        if v.nchw:  # hand back NHWC, as TF would
            conv._op("Transpose", [v.name], out=out_name, perm=[0, 2, 3, 1])
        else:
            conv._op("Identity", [v.name], out=out_name)
        rank = v.rank or 1
        outs.append(
            helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [f"{out_name}_d{i}" for i in range(rank)])
        )
    # the signature's inputs come first even when unused by the outputs asked for
    g = helper.make_graph(conv.nodes, "sightline_tfjs", conv.inputs, outs, conv.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sightline-tfjs")
    model.ir_version = IR_VERSION
    for k, val in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, val
    onnx.checker.check_model(model)
    return model
