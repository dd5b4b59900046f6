"""Build an impostor-score calibration (the JSON ``sightline.vision.calibration.Calibration`` reads).

From N identity-labelled, L2-normalised descriptors every unordered pair of images is scored once
(cosine similarity): pairs of DIFFERENT identities form the impostor distribution, pairs of the same
identity the genuine one. For LFW's 9,094 images that is ~41 million impostor pairs, so the similarity
matrix is computed in row blocks (``block`` rows x N float32, ~37 MB at 1,024 x 9,094) and never held
whole. Kept per distribution:

- impostors: a histogram with ``bins`` equal bins over [-1, 1] (20,001 bins = 1e-4 wide) plus the
  exact top ``tail`` scores. FMR(s) = #impostors >= s / N_imp is exact on bin edges and on every tail
  score; thresholds at FMR <= 10 * 1e-3 come from the exact tail (it always holds more than
  1e-2 * N_imp + 2 scores unless ``tail`` says otherwise).
- genuines: every score, exactly (4 bytes a pair; LFW has ~100k): FNMR at a threshold is exact.

Cost: one (N x N / 2) x D multiply-add pass, ~1 s of BLAS for LFW, plus numpy bookkeeping of a few
seconds; memory O(block x N + tail + genuine pairs).

Definitions: FMR(t) = fraction of impostor pairs with similarity >= t; FNMR(t) = fraction of genuine
pairs with similarity < t. ``threshold_at_fmr[f]`` is the lowest score t (an observed impostor score,
or just above the highest one) with FMR(t) <= f.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

#: FMR operating points written to the JSON.
FMRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)
DEFAULT_FMR = 1e-3


def _fmr_key(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")  # 1e-3, not 1e-03


class _ImpostorTally:
    """Running histogram + exact top-k of the impostor scores seen so far."""

    def __init__(self, bins: int, keep: int) -> None:
        self.bins = bins
        self.hist = np.zeros(bins, dtype=np.int64)
        self.keep = keep
        self.top = np.zeros(0, dtype=np.float32)
        self.n = 0

    def bin_of(self, s: np.ndarray) -> np.ndarray:
        idx = np.floor((s.astype(np.float64) + 1.0) * (self.bins / 2.0)).astype(np.int64)
        return np.clip(idx, 0, self.bins - 1)

    def edge(self, b: np.ndarray | int) -> np.ndarray:
        """Lower edge of bin b."""
        return -1.0 + np.asarray(b, dtype=np.float64) * (2.0 / self.bins)

    def add(self, s: np.ndarray) -> None:
        if not len(s):
            return
        self.n += len(s)
        self.hist += np.bincount(self.bin_of(s), minlength=self.bins)
        if len(s) > self.keep:
            s = np.partition(s, len(s) - self.keep)[len(s) - self.keep :]
        merged = np.concatenate([self.top, s])
        if len(merged) > self.keep:
            merged = np.partition(merged, len(merged) - self.keep)[len(merged) - self.keep :]
        self.top = merged


def _pair_scores(
    emb: np.ndarray, labels: np.ndarray, bins: int, keep: int, block: int
) -> tuple[_ImpostorTally, np.ndarray]:
    n = len(emb)
    imp = _ImpostorTally(bins, keep)
    genuine: list[np.ndarray] = []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        sims = emb[r0:r1] @ emb[r0:].T  # (r1-r0, n-r0) float32
        rows = np.arange(r0, r1)[:, None]
        cols = np.arange(r0, n)[None, :]
        upper = cols > rows
        same = labels[r0:r1, None] == labels[None, r0:]
        imp.add(sims[upper & ~same])
        genuine.append(sims[upper & same])
    return imp, np.sort(np.concatenate(genuine)) if genuine else np.zeros(0, np.float32)


def _check_embeddings(embeddings: npt.ArrayLike, names: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(embeddings, dtype=np.float32)
    nm = np.asarray(names).astype(str)
    if emb.ndim != 2 or len(nm) != len(emb):
        raise ValueError(f"embeddings must be (N, D) with N names, got {emb.shape} and {len(nm)} names")
    ok = ~np.isnan(emb).any(axis=1)
    if (~ok).any():
        logger.info("calibration: %d of %d images have no face, left out", (~ok).sum(), len(ok))
    emb, nm = emb[ok], nm[ok]
    norms = np.linalg.norm(emb, axis=1)
    if len(emb) and np.abs(norms - 1.0).max() > 1e-3:
        raise ValueError(f"embeddings must be L2-normalised, norms are {norms.min():.4f}..{norms.max():.4f}")
    return np.ascontiguousarray(emb), nm


def build_calibration(
    embeddings: npt.ArrayLike,
    names: Sequence[str] | np.ndarray,
    *,
    model: str,
    source: str,
    bins: int = 20001,
    curve_points: int = 200,
    tail: int | None = None,
    block: int = 1024,
) -> dict[str, object]:
    """The calibration JSON document (module docstring) for ``embeddings`` (N, D) labelled by ``names``.

    Rows with NaN (no face found) are left out. ``tail``: how many top impostor scores to keep exactly;
    default ``ceil(1e-2 * N_imp) + 2`` (so every FMR in ``FMRS`` is exact), at least 10,000.
    Raises ValueError when there are no impostor pairs (fewer than 2 identities) or the rows are not
    L2-normalised.
    """
    emb, nm = _check_embeddings(embeddings, names)
    uniq, labels = np.unique(nm, return_inverse=True)
    counts = np.bincount(labels)
    n = len(emb)
    n_total = n * (n - 1) // 2
    n_gen = int((counts * (counts - 1) // 2).sum())
    n_imp = n_total - n_gen
    if n_imp < 1:
        raise ValueError(f"need images of at least 2 identities for impostor pairs, got {len(uniq)}")
    keep = min(n_imp, tail if tail is not None else max(10_000, math.ceil(max(FMRS) * n_imp) + 2))
    logger.info("calibration: %d images, %d identities, %d impostor and %d genuine pairs", n, len(uniq), n_imp, n_gen)
    imp, gen = _pair_scores(emb, labels.astype(np.int64), bins, keep, block)
    assert imp.n == n_imp and len(gen) == n_gen

    top = np.sort(imp.top.astype(np.float64))  # ascending, the `keep` highest impostor scores
    complete = len(top) == n_imp  # the tail holds every impostor score
    suffix = np.cumsum(imp.hist[::-1])[::-1]  # suffix[b] = #impostors in bins b.. = #(s >= edge(b))

    cnt_top = len(top) - np.searchsorted(top, top, side="left")  # #impostors >= each tail score
    exact_top = np.ones(len(top), bool) if complete else top > top[0]

    def threshold_at(f: float) -> float:
        """Lowest observed score (or just above the highest) whose FMR <= f."""
        k = math.floor(f * n_imp + 1e-9)
        usable = (cnt_top <= k) & exact_top
        if usable.any():
            return float(top[np.argmax(usable)])
        if k >= len(top) and not complete:
            raise ValueError(f"tail of {len(top)} scores too short for FMR {f:g} (needs > {k})")
        return float(np.nextafter(top[-1], np.inf))

    def fnmr(t: float) -> float | None:
        return float(np.searchsorted(gen, t, side="left") / n_gen) if n_gen else None

    thresholds = {_fmr_key(f): threshold_at(f) for f in FMRS}
    fnmrs = {_fmr_key(f): fnmr(t) for f, t in zip(FMRS, thresholds.values(), strict=True)}

    # curve: target FMRs log-spaced from 0.5 down to 1/N_imp, each mapped to the lowest score reaching it
    def tail_count(s: float) -> int:  # exact for s > top[0] (or a complete tail)
        return int(len(top) - np.searchsorted(top, s, side="left"))

    points: dict[float, int] = {}  # similarity -> #impostors >= it
    for f in np.logspace(math.log10(0.5), math.log10(1.0 / n_imp), curve_points):
        k = math.floor(f * n_imp + 1e-9)
        if k < len(top) - 1 or complete:
            s = threshold_at(f)
            points[s] = tail_count(s)
        else:  # below the exact tail: the lowest bin edge with #(s >= edge) <= k
            b = min(int(np.searchsorted(-suffix, -k, side="left")), bins - 1)
            points[float(imp.edge(b))] = int(suffix[b])
    for s in [*thresholds.values(), float(top[-1])]:  # est_fmr at a reported threshold is then exact
        points[s] = tail_count(s)
    curve: list[list[float]] = []
    for s, c in sorted(points.items()):
        if c > 0 and (not curve or c / n_imp < curve[-1][1]):
            curve.append([s, c / n_imp])

    doc: dict[str, object] = {
        "model": model,
        "source": source,
        "n_images": n,
        "n_identities": len(uniq),
        "n_impostor_pairs": n_imp,
        "n_genuine_pairs": n_gen,
        "threshold_at_fmr": thresholds,
        "default_fmr": DEFAULT_FMR,
        "default_threshold": thresholds[_fmr_key(DEFAULT_FMR)],
        "fnmr_at_fmr": fnmrs,
        "impostor_max": float(top[-1]),
        "curve": curve,
    }
    return doc
