"""Build ONNX graphs of dlib's two networks from their ``.dat`` files, cached by the source's sha256.

- ResNet descriptor: input ``chips`` (N, 150, 150, 3) uint8 RGB -> output ``descriptors`` (N, 128)
  float32, the same raw (not normalised) vectors as ``dlib.face_recognition_model_v1``. The input
  normalisation ``(pixel - avg) / 256`` is in the graph.
- MMOD detector: input ``pyramid`` (1, 3, H, W) float32, a tiled image pyramid already normalised
  (built by ``sightline.vision.detect.mmod_onnx``) -> output ``scores`` (1, 1, H', W') float32, the
  raw score map before thresholding and non-maximum suppression.

Each dlib ``affine`` (or batch-norm, already folded to scale/shift) that follows a convolution is
folded into that convolution's weights and bias: one fewer pass over the feature map, at a cost of
a float32 rounding difference (~1e-7 relative) against dlib's two-step arithmetic.

Cache: ``default_cache_dir() / "onnx" / "<kind>-<sha256 of the .dat>-b<BUILD_VERSION>.onnx"`` with a
``.json`` sidecar recording the sha256 and size of the ONNX bytes. A file that is missing, truncated
or otherwise differs from its sidecar is rebuilt (about 0.5 s); writes are atomic (temp file + rename)
so concurrent processes never see a partial model. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from sightline.config import default_cache_dir
from sightline.vision.backends import dlib_format as df
from sightline.vision.backends.models import MMOD, RESNET, model_path

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

#: bump when the graphs built here change, so old cache files are not reused
BUILD_VERSION = 1
#: opset and IR version chosen for onnxruntime >= 1.18 (CPU and GPU builds)
OPSET = 17
IR_VERSION = 8

Kind = Literal["resnet", "mmod"]


class _Graph:
    """A tiny ONNX graph builder tracking each tensor's (C, H, W) shape (None where dynamic)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, arr: np.ndarray, prefix: str = "c") -> str:
        from onnx import numpy_helper

        nm = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), nm))
        return nm

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs: object) -> str:
        from onnx import helper

        out = self.name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


Shape = tuple[int, int | None, int | None]


def _conv_out(n: int | None, k: int, s: int, p: int) -> int | None:
    return None if n is None else (n + 2 * p - k) // s + 1


def _emit_layers(g: _Graph, x: str, shape: Shape, layers: tuple[df.Layer, ...]) -> tuple[str, Shape]:
    """Emit dlib's layer program; returns the output tensor name and its (C, H, W)."""
    tags: dict[int, tuple[str, Shape]] = {}
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, df.Conv):
            w = layer.weight.astype(np.float64)
            b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(nxt, df.Affine) and not layer.relu:
                gam, bet = nxt.gamma.astype(np.float64), nxt.beta.astype(np.float64)
                w = w * gam[:, None, None, None]
                b = b * gam + bet
                i += 1
            kh, kw = layer.weight.shape[2:]
            (sy, sx), (py, px) = layer.stride, layer.padding
            x = g.op(
                "Conv",
                [x, g.const(w.astype(np.float32), "w"), g.const(b.astype(np.float32), "b")],
                kernel_shape=[kh, kw],
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
            shape = (layer.weight.shape[0], _conv_out(shape[1], kh, sy, py), _conv_out(shape[2], kw, sx, px))
            if layer.relu:
                x = g.op("Relu", [x])
        elif isinstance(layer, df.Affine):
            c = len(layer.gamma)
            x = g.op("Mul", [x, g.const(layer.gamma.reshape(1, c, 1, 1), "gamma")])
            x = g.op("Add", [x, g.const(layer.beta.reshape(1, c, 1, 1), "beta")])
        elif isinstance(layer, df.Relu):
            x = g.op("Relu", [x])
        elif isinstance(layer, df.Pool):
            if layer.kernel == (0, 0):
                x = g.op("GlobalAveragePool", [x])
                shape = (shape[0], 1, 1)
            else:
                (kh, kw), (sy, sx), (py, px) = layer.kernel, layer.stride, layer.padding
                op_type = "MaxPool" if layer.kind == "max" else "AveragePool"
                x = g.op(op_type, [x], kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
                shape = (shape[0], _conv_out(shape[1], kh, sy, py), _conv_out(shape[2], kw, sx, px))
        elif isinstance(layer, df.Tag):
            tags[layer.id] = (x, shape)
        elif isinstance(layer, df.Skip):
            x, shape = tags[layer.tag]
        elif isinstance(layer, df.AddPrev):
            y, yshape = tags[layer.tag]
            if None in shape[1:] or None in yshape[1:]:
                raise ValueError("add_prev with different shapes needs a fixed input size")
            target = tuple(max(a, b) for a, b in zip(shape, yshape, strict=True))  # type: ignore[type-var]
            x = _pad_to(g, x, shape, target)  # type: ignore[arg-type]
            y = _pad_to(g, y, yshape, target)  # type: ignore[arg-type]
            x = g.op("Add", [x, y])
            shape = target  # type: ignore[assignment]
        elif isinstance(layer, df.Dense):
            x = g.op("Flatten", [x], axis=1)
            x = g.op("MatMul", [x, g.const(layer.weight, "fc")])
            if layer.bias is not None:
                x = g.op("Add", [x, g.const(layer.bias, "fcb")])
            shape = (layer.weight.shape[1], 1, 1)
        else:  # pragma: no cover
            raise TypeError(type(layer))
        i += 1
    return x, shape


def _pad_to(g: _Graph, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Zero-pad (N, C, H, W) at the end of C/H/W up to ``target`` (dlib's add_prev semantics)."""
    if shape == target:
        return x
    pads = [0, 0, 0, 0, 0, *(t - s for s, t in zip(shape, target, strict=True))]
    return g.op("Pad", [x, g.const(np.array(pads, np.int64), "pads")], mode="constant")


def _model(g: _Graph, inputs: list, outputs: list, doc: str, meta: dict[str, str]) -> onnx.ModelProto:
    import onnx
    from onnx import helper

    graph = helper.make_graph(g.nodes, "sightline_dlib", inputs, outputs, g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sightline", doc_string=doc
    )
    model.ir_version = IR_VERSION
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model


def build_resnet(net: df.DlibNetwork, meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """ONNX ModelProto: ``chips`` (N, S, S, 3) uint8 -> ``descriptors`` (N, 128) float32."""
    from onnx import TensorProto, helper

    assert net.input.size is not None
    rows, cols = net.input.size
    g = _Graph()
    x = g.op("Cast", ["chips"], to=TensorProto.FLOAT)
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    avg = np.array(net.input.avg_rgb, np.float32).reshape(1, 3, 1, 1)
    x = g.op("Sub", [x, g.const(avg, "avg")])
    x = g.op("Mul", [x, g.const(np.array(1 / 256, np.float32), "scale")])
    x, shape = _emit_layers(g, x, (3, rows, cols), net.layers)
    g.nodes.append(helper.make_node("Identity", [x], ["descriptors"], name="descriptors"))
    inp = helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", rows, cols, 3])
    out = helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", shape[0]])
    return _model(g, [inp], [out], "dlib_face_recognition_resnet_model_v1", meta or {})


def build_mmod(net: df.DlibNetwork, meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """ONNX ModelProto: ``pyramid`` (1, 3, H, W) float32 normalised -> ``scores`` (1, C, H', W')."""
    from onnx import TensorProto, helper

    g = _Graph()
    x, shape = _emit_layers(g, "pyramid", (3, None, None), net.layers)
    g.nodes.append(helper.make_node("Identity", [x], ["scores"], name="scores"))
    inp = helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, ["N", 3, "H", "W"])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", shape[0], "OH", "OW"])
    return _model(g, [inp], [out], "mmod_human_face_detector", meta or {})


def build_resize() -> onnx.ModelProto:
    """ONNX ModelProto: bilinear resize with corners mapped to corners (dlib's ``resize_image``
    geometry): ``x`` (1, C, h, w) float32 and ``sizes`` int64 [1, C, h2, w2] -> ``y``. Used for
    the MMOD pyramid levels; its float32 arithmetic differs from dlib's by ~1e-5 of a pixel step."""
    from onnx import TensorProto, helper

    g = _Graph()
    g.nodes.append(
        helper.make_node(
            "Resize",
            ["x", "", "", "sizes"],
            ["y"],
            name="resize",
            mode="linear",
            coordinate_transformation_mode="align_corners",
        )
    )
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "C", "h", "w"]),
        helper.make_tensor_value_info("sizes", TensorProto.INT64, [4]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "C", "h2", "w2"])
    return _model(g, inputs, [out], "bilinear resize (align_corners)", {})


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

_SOURCES: dict[str, str] = {"resnet": RESNET, "mmod": MMOD}
_READERS: dict[str, Callable[[Path], df.DlibNetwork]] = {"resnet": df.read_resnet, "mmod": df.read_mmod}
_BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {"resnet": build_resnet, "mmod": build_mmod}


@dataclass(frozen=True)
class CachedModel:
    """A built ONNX model: its serialized bytes, the cache file (None if it could not be written),
    the source .dat's sha256, and whether this call built it (False: read from the cache)."""

    data: bytes
    path: Path | None
    source_sha256: str
    built: bool


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_path(kind: Kind, source_sha256: str, cache_dir: Path | None = None) -> Path:
    """Where the model built from a source with this sha256 lives."""
    base = (cache_dir if cache_dir is not None else default_cache_dir()) / "onnx"
    return base / f"{kind}-{source_sha256}-b{BUILD_VERSION}.onnx"


def _read_valid(path: Path, source_sha: str) -> bytes | None:
    """The cached bytes if the file and its sidecar agree, else None (missing, truncated, stale)."""
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    if (
        not isinstance(meta, dict)
        or meta.get("source_sha256") != source_sha
        or meta.get("builder_version") != BUILD_VERSION
        or meta.get("onnx_bytes") != len(data)
        or meta.get("onnx_sha256") != hashlib.sha256(data).hexdigest()
    ):
        return None
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_cache(path: Path, data: bytes, *, source_sha: str, source_name: str, builder_version: int) -> Path | None:
    """Write a built model and its ``.json`` sidecar (source/model sha256, builder version, size) atomically.

    Returns ``path``, or None (after a warning) when the cache cannot be written: the caller then uses the
    model from memory, so a read-only or full cache directory costs a rebuild next time, never a failure."""
    try:
        _atomic_write(path, data)
        sidecar = {
            "source_sha256": source_sha,
            "builder_version": builder_version,
            "onnx_bytes": len(data),
            "onnx_sha256": hashlib.sha256(data).hexdigest(),
            "source_name": source_name,
        }
        _atomic_write(path.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
    except OSError as exc:
        logger.warning("could not write the onnx model cache %s (%s); using it from memory", path, exc)
        return None
    return path


def load_or_build(kind: Kind, *, source: Path | None = None, cache_dir: Path | None = None) -> CachedModel:
    """The ONNX model for ``kind`` ("resnet" or "mmod"), from the cache or built from ``source``
    (default: the file shipped by face_recognition_models) and cached. A cache that cannot be
    written (read-only home) is logged and the model is kept in memory only."""
    if kind not in _SOURCES:
        raise ValueError(f"kind must be one of {sorted(_SOURCES)}, got {kind!r}")
    src = Path(source) if source is not None else model_path(_SOURCES[kind])
    sha = sha256_file(src)
    path = cache_path(kind, sha, cache_dir)
    data = _read_valid(path, sha)
    if data is not None:
        logger.debug("onnx %s model from cache %s", kind, path)
        return CachedModel(data, path, sha, built=False)
    if path.exists():
        logger.warning("cached onnx model %s is corrupt or stale; rebuilding", path)
    net = _READERS[kind](src)
    model = _BUILDERS[kind](net, {"source_sha256": sha, "source_name": src.name, "builder_version": str(BUILD_VERSION)})
    data = model.SerializeToString()
    written = _write_cache(path, data, source_sha=sha, source_name=src.name, builder_version=BUILD_VERSION)
    if written is not None:
        logger.info("built onnx %s model from %s -> %s", kind, src, path)
    return CachedModel(data, written, sha, built=True)
