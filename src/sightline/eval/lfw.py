"""The LFW verification protocol on pair scores: 10-fold accuracy, ROC AUC, TAR at fixed FAR.

Pure numpy; knows nothing of the engine. A score is a similarity (higher is closer); a pair is
declared "same" when ``score >= threshold``. A pair where a face was missing in either image has
score NaN (or -inf): it is NOT dropped but always declared "different" (as if its score were -inf), so a
missing face costs a matched pair and is right for a mismatched one — dropping such pairs would
flatter a detector that misses the hard photos.

Protocol (LFW View 2, as in the LFW README and facenet/insightface's ``calculate_roc``): for each
fold, the threshold maximising accuracy on the other folds is applied to the held-out fold; the
figure is the mean held-out accuracy. Thresholds are searched exactly over every distinct training
score (no fixed grid), and the one reported is midway between the chosen score and the next lower
one. Ties in training accuracy go to the middle of the best candidates.

Spread: ``accuracy_std`` is the population standard deviation of the fold accuracies (ddof=0, as
``np.std`` in facenet/insightface/sklearn-based evaluations); ``accuracy_se`` is the standard error of
the mean as defined in the LFW technical report (sample std, ddof=1, divided by sqrt(folds)).

Unequal classes: on this project's split folds hold ~58% matched pairs, so plain accuracy (the
standard figure) rewards saying "same". ``balanced_accuracy`` (mean of TPR and TNR on the held-out
fold, at the same accuracy-chosen threshold) is reported beside it. AUC and TAR@FAR do not depend on
the class ratio and are computed over all pairs at once (not per fold). Each TAR@FAR carries a 95%
bootstrap interval (``TarAtFar.ci95``): with few mismatched pairs a low-FAR threshold is set by one or
two impostor scores, and the figure alone overstates its precision.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sightline.eval.pairs import LfwPairs

logger = logging.getLogger(__name__)

#: FAR operating points reported by default.
DEFAULT_FARS: tuple[float, ...] = (1e-3, 1e-2)


@dataclass(frozen=True)
class TarAtFar:
    """True-accept rate at the lowest threshold whose false-accept rate is at most ``far_target``.

    threshold: accept when score > threshold (strictly; the highest impostor score not accepted).
    far:       the false-accept rate actually reached (<= far_target; 0 when far_target * mismatched < 1,
               i.e. too few mismatched pairs to resolve the target: then tar is a pessimistic figure).
    ci95:      (low, high) 2.5 / 97.5 percentiles of ``tar`` over a stratified bootstrap of the pairs
               (matched and mismatched resampled separately), or None when not computed. At a low FAR
               the threshold rests on the few highest impostor scores, so this interval is wide: on
               1,494 mismatched pairs TAR@FAR1e-3 (one impostor accepted) spans ~3 points.
    impostors_allowed: mismatched pairs the target lets through (floor(far_target x mismatched)).
    """

    far_target: float
    tar: float
    threshold: float
    far: float
    ci95: tuple[float, float] | None = None
    impostors_allowed: int = 0


@dataclass(frozen=True)
class LfwResult:
    """Outcome of the 10-fold protocol; fractions in [0, 1], per-fold tuples in fold order."""

    accuracy_mean: float
    accuracy_std: float
    accuracy_se: float
    balanced_accuracy_mean: float
    fold_accuracy: tuple[float, ...]
    fold_balanced_accuracy: tuple[float, ...]
    fold_threshold: tuple[float, ...]
    auc: float
    tar_at_far: tuple[TarAtFar, ...]
    n_folds: int
    n_pairs: int
    n_matched: int
    n_mismatched: int
    n_pairs_missing_face: int
    n_matched_missing_face: int
    images_without_face: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary, rounded for reading (6 decimals)."""

        def r(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        return {
            "accuracy_mean": r(self.accuracy_mean),
            "accuracy_std": r(self.accuracy_std),
            "accuracy_std_kind": "population std of fold accuracies (ddof=0)",
            "accuracy_se": r(self.accuracy_se),
            "balanced_accuracy_mean": r(self.balanced_accuracy_mean),
            "fold_accuracy": [r(a) for a in self.fold_accuracy],
            "fold_balanced_accuracy": [r(a) for a in self.fold_balanced_accuracy],
            "fold_threshold": [r(t) for t in self.fold_threshold],
            "auc": r(self.auc),
            "tar_at_far": {
                f"{t.far_target:g}": {
                    "tar": r(t.tar),
                    "threshold": r(t.threshold),
                    "far": r(t.far),
                    "impostors_allowed": t.impostors_allowed,
                    **({"tar_ci95_bootstrap": [r(t.ci95[0]), r(t.ci95[1])]} if t.ci95 is not None else {}),
                }
                for t in self.tar_at_far
            },
            "n_folds": self.n_folds,
            "n_pairs": self.n_pairs,
            "n_matched": self.n_matched,
            "n_mismatched": self.n_mismatched,
            "n_pairs_missing_face": self.n_pairs_missing_face,
            "n_matched_missing_face": self.n_matched_missing_face,
            "images_without_face": self.images_without_face,
        }


def _check(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, folds: npt.ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same)
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (P,), got {s.shape}")
    if y.shape != s.shape or y.dtype != np.bool_:
        raise ValueError(f"is_same must be a bool array of shape {s.shape}, got {y.dtype} {y.shape}")
    if np.isposinf(s).any():
        raise ValueError("scores must be finite, or NaN / -inf where a face was missing")
    s = np.where(np.isneginf(s), np.nan, s)
    f = None
    if folds is not None:
        f = np.asarray(folds)
        if f.shape != s.shape or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"folds must be an integer array of shape {s.shape}, got {f.dtype} {f.shape}")
    return s, y, f


def _predict(s: np.ndarray, threshold: float) -> np.ndarray:
    """same iff score >= threshold; NaN (missing face) is never "same"."""
    with np.errstate(invalid="ignore"):
        return s >= threshold  # NaN >= t is False


def best_threshold(scores: npt.ArrayLike, is_same: npt.ArrayLike) -> tuple[float, float]:
    """(threshold, accuracy): the threshold maximising accuracy of ``score >= threshold`` on these pairs.

    Exact: every partition of the sorted scores is tried (O(P log P)). The threshold returned lies
    midway between the lowest accepted score and the next lower score (+inf when rejecting everything
    is best). NaN scores are always rejected.
    """
    s, y, _ = _check(scores, is_same)
    n = len(s)
    if n == 0:
        raise ValueError("no pairs to choose a threshold on")
    finite = ~np.isnan(s)
    sf, yf = s[finite], y[finite]
    order = np.argsort(-sf, kind="stable")
    sf, yf = sf[order], yf[order]
    # accept the top m finite scores, m = 0..len; only cut between distinct values
    tp = np.concatenate([[0], np.cumsum(yf)])
    fp = np.concatenate([[0], np.cumsum(~yf)])
    n_neg = int((~y).sum())
    correct = tp + (n_neg - fp)
    valid = np.ones(len(sf) + 1, dtype=bool)
    valid[1:-1] = sf[1:] < sf[:-1]  # a cut after position m-1 is only possible where the next value is lower
    cand = np.flatnonzero(valid)
    best = cand[correct[cand] == correct[cand].max()]
    m = int(best[(len(best) - 1) // 2])
    if m == 0:
        thr = math.inf
    elif m == len(sf):
        thr = float(sf[-1])  # accept every finite score: the lowest one is the threshold
    else:
        thr = float(sf[m - 1] + sf[m]) / 2.0
    return thr, float(correct[m]) / n


def _rates(s: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(accuracy, tpr, tnr) of ``score >= threshold``; tpr/tnr NaN when the class is absent."""
    pred = _predict(s, threshold)
    acc = float((pred == y).mean())
    tpr = float(pred[y].mean()) if y.any() else math.nan
    tnr = float((~pred[~y]).mean()) if (~y).any() else math.nan
    return acc, tpr, tnr


def roc_auc(scores: npt.ArrayLike, is_same: npt.ArrayLike) -> float:
    """Area under the ROC curve = P(score of a random matched pair > a random mismatched one),
    ties counting 1/2 (Mann-Whitney U); NaN scores rank below every finite score and tie together."""
    s, y, _ = _check(scores, is_same)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    v = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    # average 1-based ranks over ties
    first = np.concatenate([[True], sv[1:] != sv[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [len(sv)]])
    avg_rank = (starts + ends + 1) / 2.0  # mean of (start+1 .. end)
    ranks = np.empty(len(sv))
    ranks[order] = avg_rank[group]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _impostor_genuine(scores: npt.ArrayLike, is_same: npt.ArrayLike, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(mismatched, matched) scores, a missing face (NaN) scored -inf; checks ``far`` and the input."""
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1), got {far}")
    s, y, _ = _check(scores, is_same)
    v = np.where(np.isnan(s), -np.inf, s)
    return v[~y], v[y]


def _far_threshold(imp_desc: np.ndarray, far: float) -> tuple[int, float]:
    """(impostors allowed k = floor(far x n), threshold): the (k+1)-th highest of the mismatched scores
    ``imp_desc`` (sorted high to low), so that accepting ``score > threshold`` lets at most k through."""
    k = math.floor(far * len(imp_desc) + 1e-9)
    return k, (-math.inf if k >= len(imp_desc) else float(imp_desc[k]))


def tar_at_far(scores: npt.ArrayLike, is_same: npt.ArrayLike, far: float) -> TarAtFar:
    """TAR at the lowest threshold whose FAR over the mismatched pairs is <= ``far`` (see TarAtFar)."""
    imp, gen = _impostor_genuine(scores, is_same, far)
    if len(imp) == 0 or len(gen) == 0:
        return TarAtFar(far, math.nan, math.nan, math.nan)
    imp = np.sort(imp)[::-1]
    k, thr = _far_threshold(imp, far)
    accepted_imp = int((imp > thr).sum())
    tar = float((gen > thr).mean())
    return TarAtFar(far, tar, thr, accepted_imp / len(imp), impostors_allowed=k)


def tar_at_far_ci(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, far: float, *, replicates: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(low, high) 95% percentile interval of :func:`tar_at_far` over ``replicates`` stratified bootstrap
    resamples of the pairs (matched and mismatched pairs resampled separately, with replacement; seeded,
    so the same input gives the same interval). Cost: ``replicates`` sorts of the mismatched scores."""
    if replicates < 10:
        raise ValueError(f"replicates must be >= 10, got {replicates}")
    imp, gen = _impostor_genuine(scores, is_same, far)
    if len(imp) == 0 or len(gen) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    tars = np.empty(replicates)
    for i in range(replicates):
        _, thr = _far_threshold(np.sort(imp[rng.integers(0, len(imp), len(imp))])[::-1], far)
        tars[i] = (gen[rng.integers(0, len(gen), len(gen))] > thr).mean()
    lo, hi = np.percentile(tars, [2.5, 97.5])
    return (float(lo), float(hi))


def accuracy_at_threshold(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, threshold: float, folds: npt.ArrayLike | None = None
) -> float:
    """Accuracy of a fixed rule ``score >= threshold`` (NaN = different); with ``folds``, the mean of
    the per-fold accuracies (comparable with ``LfwResult.accuracy_mean``), else over all pairs."""
    s, y, f = _check(scores, is_same, folds)
    if f is None:
        return _rates(s, y, threshold)[0]
    return float(np.mean([_rates(s[f == k], y[f == k], threshold)[0] for k in np.unique(f)]))


def evaluate_lfw(
    scores: npt.ArrayLike,
    is_same: npt.ArrayLike,
    folds: npt.ArrayLike,
    *,
    images_without_face: int = 0,
    fars: tuple[float, ...] = DEFAULT_FARS,
    bootstrap: int = 1000,
) -> LfwResult:
    """Run the protocol (module docstring) on P pairs.

    scores: (P,) float similarity, NaN where a face was missing in either image.
    is_same: (P,) bool; folds: (P,) int fold ids (at least 2 distinct).
    images_without_face: reported as given (the number of distinct images where no face was found).
    bootstrap: replicates for each TAR@FAR's 95% interval (seed 0; 0 = no interval; ~0.3 s per 1,000
    replicates on 1,500 mismatched pairs).
    """
    s, y, f = _check(scores, is_same, folds)
    assert f is not None
    fold_ids = np.unique(f)
    if len(fold_ids) < 2:
        raise ValueError(f"the protocol needs at least 2 folds, got {len(fold_ids)}")
    accs: list[float] = []
    bals: list[float] = []
    thrs: list[float] = []
    for k in fold_ids:
        test = f == k
        thr, _ = best_threshold(s[~test], y[~test])
        acc, tpr, tnr = _rates(s[test], y[test], thr)
        accs.append(acc)
        bals.append((tpr + tnr) / 2.0)
        thrs.append(thr)
    a = np.array(accs)
    missing = np.isnan(s)
    result = LfwResult(
        accuracy_mean=float(a.mean()),
        accuracy_std=float(a.std(ddof=0)),
        accuracy_se=float(a.std(ddof=1) / math.sqrt(len(a))),
        balanced_accuracy_mean=float(np.mean(bals)),
        fold_accuracy=tuple(accs),
        fold_balanced_accuracy=tuple(bals),
        fold_threshold=tuple(thrs),
        auc=roc_auc(s, y),
        tar_at_far=tuple(
            dataclasses.replace(tar_at_far(s, y, far), ci95=tar_at_far_ci(s, y, far, replicates=bootstrap))
            if bootstrap
            else tar_at_far(s, y, far)
            for far in fars
        ),
        n_folds=len(fold_ids),
        n_pairs=len(s),
        n_matched=int(y.sum()),
        n_mismatched=int((~y).sum()),
        n_pairs_missing_face=int(missing.sum()),
        n_matched_missing_face=int((missing & y).sum()),
        images_without_face=int(images_without_face),
    )
    logger.info(
        "LFW: accuracy %.4f ± %.4f over %d folds, AUC %.4f, %d pairs with a missing face",
        result.accuracy_mean,
        result.accuracy_std,
        result.n_folds,
        result.auc,
        result.n_pairs_missing_face,
    )
    return result


def pair_scores(embeddings: npt.ArrayLike, paths: npt.ArrayLike, pairs: LfwPairs) -> npt.NDArray[np.float64]:
    """(P,) cosine similarity of each pair from (N, D) L2-normalised ``embeddings`` of the images
    ``paths`` (relative, ``Name/Name_NNNN.jpg``); NaN where either image has no face (a NaN row).
    Raises KeyError naming the first pair image missing from ``paths``."""
    emb = np.asarray(embeddings, np.float64)
    index = {str(p): i for i, p in enumerate(np.asarray(paths))}
    pp = pairs.path_pairs()
    a = np.array([index[x] for x, _ in pp], np.int64)
    b = np.array([index[y] for _, y in pp], np.int64)
    return np.einsum("ij,ij->i", emb[a], emb[b])
