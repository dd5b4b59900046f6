"""dlib's serialization primitives and the two real network files."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sightline.vision.backends import dlib_format as df
from sightline.vision.backends.models import MMOD, RESNET, model_path


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x01\x00"),
        (1, b"\x01\x01"),
        (-1, b"\x81\x01"),
        (255, b"\x01\xff"),
        (256, b"\x02\x00\x01"),
        (-300, b"\x82\x2c\x01"),
        (2**63 - 1, b"\x08" + b"\xff" * 7 + b"\x7f"),
    ],
)
def test_int_encoding(value: int, encoded: bytes) -> None:
    assert df.pack_int(value) == encoded
    r = df.DlibReader(encoded)
    assert r.read_int() == value
    assert r.remaining == 0


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (1.0, b"\x01\x10\x81\x04"),  # mantissa 16, exponent -4: as stored in mmod_human_face_detector.dat
        (0.0, b"\x01\x00\x01\x0b"),
        (-2.5, b"\x81\x14\x81\x03"),  # -20 * 2**-3
    ],
)
def test_float_encoding(value: float, encoded: bytes) -> None:
    assert df.pack_float(value) == encoded
    assert df.DlibReader(encoded).read_float() == value


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_float_infinities(value: float) -> None:
    assert df.DlibReader(df.pack_float(value)).read_float() == value


def test_float_nan() -> None:
    enc = df.pack_float(math.nan)
    assert enc == df.pack_int(0) + df.pack_int(df.FLOAT_NAN)
    assert math.isnan(df.DlibReader(enc).read_float())


@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1))
def test_int_round_trip(value: int) -> None:
    assert df.DlibReader(df.pack_int(value)).read_int() == value


@given(st.floats(allow_nan=False))
def test_float_round_trip(value: float) -> None:
    assert df.DlibReader(df.pack_float(value)).read_float() == value


def test_unsigned_rejects_sign_bit() -> None:
    with pytest.raises(df.DlibFormatError, match="control byte"):
        df.DlibReader(b"\x81\x01").read_uint()


@pytest.mark.parametrize("data", [b"\x00", b"\x09" + b"\x00" * 9, b"\x02\x01"])
def test_bad_or_truncated_int(data: bytes) -> None:
    with pytest.raises(df.DlibFormatError):
        df.DlibReader(data).read_int()


def test_int_respects_target_width() -> None:
    with pytest.raises(df.DlibFormatError):
        df.DlibReader(df.pack_int(70000)).read_int(max_bytes=2)


def test_bool_and_string() -> None:
    r = df.DlibReader(b"10" + df.pack_int(5) + b"con_6")
    assert r.read_bool() is True
    assert r.read_bool() is False
    assert r.read_string() == "con_6"
    with pytest.raises(df.DlibFormatError, match="bool"):
        df.DlibReader(b"x").read_bool()


def test_tensor() -> None:
    vals = np.arange(6, dtype="<f4") - 2.5
    data = df.pack_int(2) + b"".join(df.pack_int(d) for d in (1, 2, 3, 1)) + vals.tobytes()
    t = df.DlibReader(data).read_tensor()
    assert t.shape == (1, 2, 3, 1) and t.dtype == np.float32
    np.testing.assert_array_equal(t.reshape(-1), vals)
    with pytest.raises(df.DlibFormatError, match="end of data"):
        df.DlibReader(data[:-1]).read_tensor()
    with pytest.raises(df.DlibFormatError, match="version"):
        df.DlibReader(df.pack_int(3) + data[2:]).read_tensor()


def test_read_resnet() -> None:
    net = df.read_resnet(model_path(RESNET))
    assert net.input.kind == "rgb_image_sized" and net.input.size == (150, 150)
    np.testing.assert_allclose(net.input.avg_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    convs = [x for x in net.layers if isinstance(x, df.Conv)]
    assert len(convs) == 29
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2) and convs[0].padding == (0, 0)
    assert all(c.padding == ((1, 1) if c.stride == (1, 1) else (0, 0)) for c in convs[1:])
    assert sum(isinstance(x, df.AddPrev) for x in net.layers) == 14  # 3 + 4 + 3 + 3 + 1 residual blocks
    dense = net.layers[-1]
    assert isinstance(dense, df.Dense) and dense.weight.shape == (256, 128) and dense.bias is None
    assert all(np.isfinite(c.weight).all() for c in convs)
    assert isinstance(net.loss, df.MetricLoss) and net.loss.distance_threshold == pytest.approx(0.6)


def test_read_mmod() -> None:
    net = df.read_mmod(model_path(MMOD))
    assert net.input.kind == "rgb_image_pyramid"
    assert (net.input.pyramid_padding, net.input.pyramid_outer_padding) == (10, 11)
    assert isinstance(net.loss, df.MmodLoss)
    assert [(w.width, w.height) for w in net.loss.windows] == [(80, 80)]
    assert net.loss.overlaps_nms[0] == pytest.approx(0.3383, abs=1e-4)
    convs = [x for x in net.layers if isinstance(x, df.Conv)]
    assert [c.weight.shape[0] for c in convs] == [16, 32, 32, 45, 45, 45, 1]
    affines = [x for x in net.layers if isinstance(x, df.Affine)]
    assert len(affines) == 6  # stored as bn_con and folded
    assert all(np.isfinite(a.gamma).all() and (a.gamma != 1).any() for a in affines)


def test_truncated_or_padded_file_is_rejected() -> None:
    data = model_path(MMOD).read_bytes()
    with pytest.raises(df.DlibFormatError):
        df.read_network(data[: len(data) // 2], df.mmod_program(), "mmod")
    with pytest.raises(df.DlibFormatError, match="bytes left"):
        df.read_network(data + b"\x00", df.mmod_program(), "mmod")


def test_wrong_program_is_rejected() -> None:
    data = model_path(MMOD).read_bytes()
    with pytest.raises(df.DlibFormatError):
        df.read_network(data, df.resnet_program(), "metric")


def test_float32_read_rounds_mantissa() -> None:
    # 2**24 + 1 is not a float32: dlib reads the mantissa into a float first
    enc = df.pack_int(2**24 + 1) + df.pack_int(0)
    assert df.DlibReader(enc).read_float32() == float(struct.unpack("f", struct.pack("f", 2**24 + 1))[0])


def _multiply_adds(net: df.DlibNetwork, rows: int, cols: int) -> int:
    """Multiply-adds of one forward pass, following the program's shapes (tags, skips, zero-pad adds)."""
    c, h, w = 3, rows, cols
    tags: dict[int, tuple[int, int, int]] = {}
    total = 0
    for layer in net.layers:
        if isinstance(layer, df.Conv):
            o, i, k, _ = layer.weight.shape
            h = (h + 2 * layer.padding[0] - k) // layer.stride[0] + 1
            w = (w + 2 * layer.padding[1] - k) // layer.stride[1] + 1
            c, total = o, total + h * w * o * i * k * k
        elif isinstance(layer, df.Pool):
            if layer.kernel == (0, 0):
                h = w = 1
            else:
                h = (h - layer.kernel[0]) // layer.stride[0] + 1
                w = (w - layer.kernel[1]) // layer.stride[1] + 1
        elif isinstance(layer, df.Tag):
            tags[layer.id] = (c, h, w)
        elif isinstance(layer, df.Skip):
            c, h, w = tags[layer.tag]
        elif isinstance(layer, df.AddPrev):
            tc, th, tw = tags[layer.tag]
            c, h, w = max(c, tc), max(h, th), max(w, tw)
        elif isinstance(layer, df.Dense):
            total += layer.weight.size
    return total


def test_resnet_cost() -> None:
    # ~271 M multiply-adds per 150x150 chip: the program, the strides and the paddings agree
    macs = _multiply_adds(df.read_resnet(model_path(RESNET)), 150, 150)
    assert macs == pytest.approx(270.85e6, rel=1e-3)
