"""Open-set (1:N watchlist) error rates from search scores: FPIR, FNIR, rank-k, the DET curve.

Pure numpy; knows nothing of the engine or the gallery. Vocabulary of NIST FRVT 1:N (NISTIR 8271):

- a **non-mated** search is a probe of someone NOT on the list. Its figure is the highest similarity
  over every enrolled person (``nonmated_top``). ``FPIR(T)`` = fraction of non-mated searches whose
  top score is ``>= T`` (a stranger raises an alert).
- a **mated** search is a probe of someone on the list. Its figures are the similarity to its own
  person (``mated_score``) and its rank (1 + the number of OTHER enrolled persons scoring strictly
  higher; ties go to the mate). ``FNIR(T)`` = fraction of mated searches that are NOT "mate at rank 1
  with ``mated_score >= T``" (the alert, if any, names the wrong person or there is none).
- ``rank-k`` (CMC) = fraction of mated searches whose mate is within the top k, no threshold.

A probe where no face was found has score NaN: a mated one is a miss at every threshold and every
rank (counted, never dropped — dropping would flatter a detector that misses the hard photos), a
non-mated one never raises an alert.

Operating points: ``fnir_at_fpir(f)`` uses the lowest threshold T with FPIR(T) <= f, i.e. just above
the (floor(f * N_nm) + 1)-th highest non-mated score, where N_nm is the number of non-mated searches.
With fewer than 1 / f non-mated searches that threshold is above every stranger (FPIR 0): the FNIR is
then pessimistic and ``fpir`` in the result says what was actually reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OperatingPoint:
    """FNIR at the lowest threshold whose FPIR is at most ``fpir_target``.

    threshold: alert when similarity >= threshold; fpir: the rate actually reached (<= target).
    """

    fpir_target: float
    fnir: float
    threshold: float
    fpir: float


@dataclass(frozen=True, eq=False)
class DetCurve:
    """(K,) arrays, one point per distinct non-mated top score (descending thresholds), plus the
    end point where every score is accepted. fpir increases, fnir decreases along the arrays."""

    threshold: F64
    fpir: F64
    fnir: F64


def _arr(x: npt.ArrayLike, name: str) -> F64:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {a.shape}")
    if np.isposinf(a).any():
        raise ValueError(f"{name} must be finite, or NaN / -inf where no face was found")
    return np.where(np.isneginf(a), np.nan, a)


@dataclass(frozen=True, eq=False)
class OpenSetScores:
    """The per-search figures of one open-set evaluation.

    mated_score: (M,) similarity of each mated probe to its own person (NaN: no face).
    mated_rank:  (M,) int rank of the mate among enrolled persons (1 = best; a large sentinel where
                 no face was found).
    nonmated_top: (U,) highest similarity of each non-mated probe over the list (NaN: no face).
    """

    mated_score: F64
    mated_rank: npt.NDArray[np.int64]
    nonmated_top: F64

    def __post_init__(self) -> None:
        ms = _arr(self.mated_score, "mated_score")
        nt = _arr(self.nonmated_top, "nonmated_top")
        mr = np.asarray(self.mated_rank)
        if mr.shape != ms.shape or not np.issubdtype(mr.dtype, np.integer):
            raise ValueError(f"mated_rank must be an int array of shape {ms.shape}, got {mr.dtype} {mr.shape}")
        if len(mr) and mr.min() < 1:
            raise ValueError("mated_rank values are 1-based")
        mr = np.where(np.isnan(ms), np.iinfo(np.int64).max, mr).astype(np.int64)
        object.__setattr__(self, "mated_score", ms)
        object.__setattr__(self, "nonmated_top", nt)
        object.__setattr__(self, "mated_rank", mr)

    @classmethod
    def from_matrix(cls, sims: npt.ArrayLike, mate: npt.ArrayLike) -> OpenSetScores:
        """From a (Q, P) probe x enrolled-person similarity matrix (rows of NaN where no face) and
        ``mate``: (Q,) the column of each probe's own person, or -1 for a non-mated probe."""
        s = np.asarray(sims, dtype=np.float64)
        m = np.asarray(mate, dtype=np.int64)
        if s.ndim != 2 or m.shape != (len(s),):
            raise ValueError(f"sims must be (Q, P) and mate (Q,), got {s.shape} and {m.shape}")
        if len(m) and (m.max() >= s.shape[1] or m.min() < -1):
            raise ValueError(f"mate must be -1 or a column in [0, {s.shape[1]})")
        is_mated = m >= 0
        sm, mm = s[is_mated], m[is_mated]
        mated_score = sm[np.arange(len(sm)), mm] if len(sm) else np.zeros(0)
        with np.errstate(invalid="ignore"):
            rank = 1 + (sm > mated_score[:, None]).sum(axis=1) if len(sm) else np.zeros(0, np.int64)
        nm = s[~is_mated]
        if nm.shape[1] == 0 or len(nm) == 0:
            top = np.full(len(nm), np.nan)
        else:
            top = np.where(np.isnan(nm), -np.inf, nm).max(axis=1)
            top[np.isneginf(top)] = np.nan
        return cls(mated_score, rank.astype(np.int64), top)

    # ---- rates -------------------------------------------------------------------------------------
    @property
    def n_mated(self) -> int:
        return len(self.mated_score)

    @property
    def n_nonmated(self) -> int:
        return len(self.nonmated_top)

    def fpir(self, threshold: float) -> float:
        """Fraction of non-mated searches with a top score >= threshold (NaN when there are none)."""
        if not self.n_nonmated:
            return math.nan
        with np.errstate(invalid="ignore"):
            return float((self.nonmated_top >= threshold).mean())

    def fnir(self, threshold: float) -> float:
        """Fraction of mated searches NOT returning the mate at rank 1 with score >= threshold."""
        if not self.n_mated:
            return math.nan
        with np.errstate(invalid="ignore"):
            hit = (self.mated_rank == 1) & (self.mated_score >= threshold)
        return float(1.0 - hit.mean())

    def rank_k(self, k: int) -> float:
        """Fraction of mated searches whose mate is among the top ``k`` persons (no threshold)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not self.n_mated:
            return math.nan
        return float((self.mated_rank <= k).mean())

    def threshold_at_fpir(self, fpir: float) -> float:
        """The lowest threshold T with FPIR(T) <= ``fpir``: just above the (floor(fpir * U) + 1)-th highest
        non-mated top score (U non-mated searches); -1 when no non-mated probe has a face."""
        if not 0.0 < fpir < 1.0:
            raise ValueError(f"fpir must be in (0, 1), got {fpir}")
        nm = np.sort(self.nonmated_top[~np.isnan(self.nonmated_top)])[::-1]
        if len(nm) == 0:
            return -1.0
        k = math.floor(fpir * self.n_nonmated + 1e-9)  # strangers we may let through
        if k >= len(nm):  # every stranger with a face may pass: accept every score
            return float(nm[-1])
        return float(np.nextafter(nm[k], np.inf))

    def fnir_at_fpir(self, fpir: float) -> OperatingPoint:
        """FNIR at ``threshold_at_fpir(fpir)`` (see the module docstring)."""
        if not self.n_nonmated or not self.n_mated:
            return OperatingPoint(fpir, math.nan, math.nan, math.nan)
        t = self.threshold_at_fpir(fpir)
        return OperatingPoint(fpir, self.fnir(t), t, self.fpir(t))

    def det(self) -> DetCurve:
        """FPIR and FNIR at every threshold where FPIR changes (each distinct non-mated top score),
        vectorised: O((U + M) log(U + M))."""
        nm = np.sort(self.nonmated_top[~np.isnan(self.nonmated_top)])[::-1]
        thr = np.unique(nm)[::-1]  # descending distinct values
        if len(thr) == 0:
            return DetCurve(np.zeros(0), np.zeros(0), np.zeros(0))
        # count of non-mated >= t for each t: searchsorted on ascending copy
        asc = nm[::-1]
        n_fp = len(asc) - np.searchsorted(asc, thr, side="left")
        hits = np.sort(self.mated_score[(self.mated_rank == 1) & ~np.isnan(self.mated_score)])
        n_hit = len(hits) - np.searchsorted(hits, thr, side="left")
        fpir = n_fp / max(self.n_nonmated, 1)
        fnir = 1.0 - n_hit / max(self.n_mated, 1) if self.n_mated else np.full(len(thr), np.nan)
        return DetCurve(thr.astype(np.float64), fpir.astype(np.float64), np.asarray(fnir, np.float64))


def plot_det(curves: dict[str, DetCurve], out: str, *, title: str = "DET (open-set identification)") -> None:
    """Write a DET plot (FNIR vs FPIR, both log axes) of one or more named curves to a PNG.

    A rate of 0 is drawn on the axis floor (half the smallest non-zero rate). Uses matplotlib's Agg
    backend (no display); imported here so that importing this module costs nothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def floor(values: list[F64], default: float) -> float:
        pos = [float(v[v > 0].min()) for v in values if (v > 0).any()]
        return min([*pos, default]) / 2.0

    # log axes: a rate of 0 (no error at that threshold) is drawn on the axis floor, half the smallest
    # non-zero rate, instead of being dropped (perfect data would otherwise leave nothing to draw)
    x0 = floor([c.fpir for c in curves.values()], 1e-3)
    y0 = floor([c.fnir[np.isfinite(c.fnir)] for c in curves.values()], 1e-2)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    try:
        for name, c in curves.items():
            ok = np.isfinite(c.fnir) & (c.fpir > 0)
            ax.step(c.fpir[ok], np.maximum(c.fnir[ok], y0), where="post", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(x0, 1.0)
        ax.set_ylim(y0 * 0.9, 1.05)
        ax.set_xlabel("FPIR (strangers raising an alert)")
        ax.set_ylabel("FNIR (listed people missed at rank 1)")
        ax.set_title(title)
        for f in (1e-3, 1e-2):
            ax.axvline(f, color="grey", lw=0.6, ls=":")
        ax.grid(True, which="both", lw=0.3)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
