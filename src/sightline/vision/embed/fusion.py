"""Score fusion of dlib's ResNet (128-D) and faceres (1024-D) in one 1152-D template.

Fused score of two faces = a weighted average of each model's cosine similarity z-normalised by
that model's impostor statistics: ``z_m = (cos_m - mu_m) / sd_m``, ``fused = s_a z_a + s_b z_b``
(``share`` s_a + s_b = 1; the plain average is s = (0.5, 0.5)), with ``mu_m`` / ``sd_m`` the mean
and standard deviation of the model's similarity over random pairs of different photos (no labels
needed: in a large dataset nearly every random pair is two different people; :func:`fit`).
The shipped share is (0.8, 0.2): faceres alone is much weaker than dlib here (LFW dev 97.8% vs
99.0%, TAR@FAR1e-3 85% vs 96%), and the share that minimises the all-pairs false non-match rate at
the default operating point (FMR 1e-3 over 41 M LFW dev impostor pairs) is 0.8; equal shares let the
weaker model pull the fusion below dlib alone (benchmarks/fusion_share.py, docs/BENCHMARKS.md §7).

One template whose plain cosine IS the fused score (up to a fixed increasing affine map), so the
gallery's single vector index serves unchanged: with unit ``a`` (dlib) and ``b`` (faceres),

    v = [w_a * a, w_b * b] / sqrt(w_a^2 + w_b^2),   w_m^2 = s_m / sd_m

has unit norm and ``v . v' = (s_a a.a' / sd_a + s_b b.b' / sd_b) / (w_a^2 + w_b^2)
= (fused + s_a mu_a / sd_a + s_b mu_b / sd_b) / (w_a^2 + w_b^2)``. The means drop out of the
template (a constant shift), but :meth:`FusionParams.fused_from_cosine` maps a template cosine back
to the z-score average for reports. Thresholds are calibrated on the template cosine directly
(``fusion_dlib_faceres_v1.calibration.json``).

The parameters shipped (``fusion_dlib_faceres_v1.fusion.json``) were measured on the LFW dev side
(``/work/shared/data/lfw``, docs/BENCHMARKS.md §7); nothing was tuned on any other data.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from sightline.types import F32

logger = logging.getLogger(__name__)

MODEL = "fusion_dlib_faceres_v1"
PARTS = ("dlib_resnet_v1", "faceres_hse_v1")
DIMS = (128, 1024)
DIM = sum(DIMS)
_SUFFIX = ".fusion.json"


@dataclass(frozen=True)
class FusionParams:
    """Impostor mean and spread of each part's cosine similarity (over random pairs)."""

    model: str
    parts: tuple[str, str]
    dims: tuple[int, int]
    mu: tuple[float, float]
    sd: tuple[float, float]
    n_pairs: int
    source: str = ""
    #: each model's share of the fused z-score (sums to 1)
    share: tuple[float, float] = (0.5, 0.5)

    def __post_init__(self) -> None:
        if len(self.parts) != 2 or len(self.dims) != 2 or len(self.mu) != 2 or len(self.sd) != 2:
            raise ValueError("fusion params need exactly two parts, dims, mu and sd")
        for name, v in (("sd", self.sd[0]), ("sd", self.sd[1])):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {self.sd}")
        if not all(math.isfinite(m) and -1 <= m <= 1 for m in self.mu):
            raise ValueError(f"mu must be cosines in [-1, 1], got {self.mu}")
        if len(self.share) != 2 or not all(math.isfinite(x) and 0 < x < 1 for x in self.share):
            raise ValueError(f"share must be two numbers in (0, 1), got {self.share}")
        if abs(sum(self.share) - 1) > 1e-9:
            raise ValueError(f"share must sum to 1, got {self.share}")

    def _w2(self) -> np.ndarray:
        return np.array([self.share[0] / self.sd[0], self.share[1] / self.sd[1]])

    @property
    def weights(self) -> tuple[float, float]:
        """(w_a, w_b) after normalising the template: w_m^2 = share_m / sd_m / sum of both."""
        w2 = self._w2()
        w = np.sqrt(w2 / w2.sum())
        return float(w[0]), float(w[1])

    def fused_from_cosine(self, cos: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Template cosine -> the share-weighted average of the two z-scores (same order, affine)."""
        w2 = self._w2()
        shift = float(w2[0] * self.mu[0] + w2[1] * self.mu[1])
        return np.asarray(cos, np.float64) * w2.sum() - shift

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["weights"] = list(self.weights)
        return d

    @classmethod
    def from_json(cls, doc: dict) -> FusionParams:
        try:
            return cls(
                model=str(doc["model"]),
                parts=tuple(doc["parts"]),  # type: ignore[arg-type]
                dims=tuple(int(x) for x in doc["dims"]),  # type: ignore[arg-type]
                mu=tuple(float(x) for x in doc["mu"]),  # type: ignore[arg-type]
                sd=tuple(float(x) for x in doc["sd"]),  # type: ignore[arg-type]
                n_pairs=int(doc["n_pairs"]),
                source=str(doc.get("source", "")),
                share=tuple(float(x) for x in doc.get("share", (0.5, 0.5))),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a fusion parameter document: {exc}") from None


def _unit(x: npt.ArrayLike, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(x, np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must be (N, {dim}), got {arr.shape}")
    n = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(n, 1e-12)


def fuse(a: npt.ArrayLike, b: npt.ArrayLike, params: FusionParams) -> F32:
    """(N, 128) dlib and (N, 1024) faceres descriptors (any scale) -> (N, 1152) unit templates.

    Each part is L2-normalised first, then scaled by its weight (module docstring). A NaN row
    (no face) stays NaN.
    """
    ua, ub = _unit(a, params.dims[0], "a"), _unit(b, params.dims[1], "b")
    if len(ua) != len(ub):
        raise ValueError(f"a and b must have the same rows, got {len(ua)} and {len(ub)}")
    wa, wb = params.weights
    out = np.concatenate([wa * ua, wb * ub], axis=1)
    out[np.isnan(out).any(axis=1)] = np.nan  # a face missing in either part is missing in the template
    return np.ascontiguousarray(out, dtype=np.float32)


def random_pair_stats(emb: npt.ArrayLike, n_pairs: int = 200_000, seed: int = 0) -> tuple[float, float, int]:
    """(mean, std, pairs used) of the cosine of ``n_pairs`` random pairs of distinct rows of ``emb``
    ((N, D), L2-normalised here; NaN rows left out). Unlabelled: the pairs are presumed impostors."""
    e = np.asarray(emb, np.float32)
    e = e[~np.isnan(e).any(axis=1)]
    if len(e) < 2:
        raise ValueError(f"need at least 2 descriptors, got {len(e)}")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(e), n_pairs)
    j = rng.integers(0, len(e) - 1, n_pairs)
    j = j + (j >= i)  # j != i
    s = np.einsum("ij,ij->i", e[i], e[j]).astype(np.float64)
    return float(s.mean()), float(s.std()), n_pairs


def fit(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_pairs: int = 200_000,
    seed: int = 0,
    source: str = "",
    share_a: float = 0.5,
) -> FusionParams:
    """Fusion parameters from unlabelled descriptors of the same faces: (N, 128) and (N, 1024).
    ``share_a``: the first model's share of the fused z-score (the second gets 1 - share_a)."""
    mu_a, sd_a, n = random_pair_stats(a, n_pairs, seed)
    mu_b, sd_b, _ = random_pair_stats(b, n_pairs, seed)
    return FusionParams(MODEL, PARTS, DIMS, (mu_a, mu_b), (sd_a, sd_b), n, source, (share_a, round(1.0 - share_a, 12)))


def load_builtin(model: str = MODEL) -> FusionParams:
    """The parameters shipped for ``model`` (``sightline/vision/embed/{model}.fusion.json``)."""
    res = resources.files("sightline.vision.embed") / f"{model}{_SUFFIX}"
    if not res.is_file():
        raise FileNotFoundError(f"no fusion parameters shipped for {model!r}")
    params = FusionParams.from_json(json.loads(res.read_text(encoding="utf-8")))
    if params.model != model:
        raise ValueError(f"{res}: holds the parameters of {params.model!r}, not {model!r}")
    return params
