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


def _summarise(imp: _ImpostorTally, gen: np.ndarray, n_imp: int, *, bins: int, curve_points: int) -> dict[str, object]:
    """The fields every calibration document shares, from an impostor tally and the sorted genuine
    scores: ``threshold_at_fmr``, ``default_fmr``, ``default_threshold``, ``fnmr_at_fmr``,
    ``impostor_max`` and ``curve`` (module docstring for the conventions)."""
    n_gen = len(gen)
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

    return {
        "threshold_at_fmr": thresholds,
        "default_fmr": DEFAULT_FMR,
        "default_threshold": thresholds[_fmr_key(DEFAULT_FMR)],
        "fnmr_at_fmr": fnmrs,
        "impostor_max": float(top[-1]),
        "curve": curve,
    }


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

    summary = _summarise(imp, gen, n_imp, bins=bins, curve_points=curve_points)

    doc: dict[str, object] = {
        "model": model,
        "source": source,
        "n_images": n,
        "n_identities": len(uniq),
        "n_impostor_pairs": n_imp,
        "n_genuine_pairs": n_gen,
        **summary,
    }
    return doc


# ---- fused templates ----------------------------------------------------------------------------

#: Photos per fused template measured and shipped (``<model>.fused_k{K}.calibration.json``).
FUSED_KS: tuple[int, ...] = (2, 3, 4, 5)
FUSED_SELECTION = "the first K photos with a face of each identity, in file order"


def fused_templates(
    embeddings: npt.ArrayLike, names: Sequence[str] | np.ndarray, k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], np.ndarray]:
    """One fused template per identity with >= ``k`` photos with a face: the L2-normalised mean of
    its first ``k`` such photos in file order (the mean the matcher and ``eval watchlist --template
    fused`` build). Rows with NaN (no face) are left out first.

    Returns ``(templates, template_label, labels, used, photos)``: templates (P, D) float32 unit rows;
    template_label (P,) the identity label of each; labels (N,) the identity label of each photo
    kept; used (N,) bool, the photos fused into a template; photos (N, D) float32, the photos kept.
    Raises ValueError for k < 2 or rows that are not L2-normalised.
    """
    kk = int(k)
    if kk < 2:
        raise ValueError(f"fused templates average K >= 2 photos, got K = {k}")
    emb, nm = _check_embeddings(embeddings, names)
    _, labels = np.unique(nm, return_inverse=True)
    labels = labels.astype(np.int64)
    order = np.argsort(labels, kind="stable")  # file order within each identity
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    starts = np.r_[0, np.cumsum(counts)]
    eligible = np.flatnonzero(counts >= kk)
    used = np.zeros(len(emb), bool)
    rows = np.concatenate([order[starts[i] : starts[i] + kk] for i in eligible]) if len(eligible) else np.zeros(0, int)
    used[rows] = True
    sums = emb[rows].astype(np.float64).reshape(len(eligible), kk, -1).sum(axis=1) if len(eligible) else None
    if sums is None:
        templates = np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0), np.float32)
    else:
        templates = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return templates, eligible.astype(np.int64), labels, used, emb  # type: ignore[return-value]


def build_fused_calibration(
    embeddings: npt.ArrayLike,
    names: Sequence[str] | np.ndarray,
    *,
    k: int,
    model: str,
    source: str,
    bins: int = 20001,
    curve_points: int = 200,
    tail: int | None = None,
    block: int = 256,
) -> dict[str, object]:
    """The calibration document of FUSED templates of ``k`` photos each, for embeddings (N, D)
    L2-normalised labelled by ``names`` (N,). Same fields and threshold convention as
    ``build_calibration`` (so ``Calibration.from_json`` reads it), plus ``template: "fused"``,
    ``fused_k``, ``selection`` and ``n_templates``.

    For every identity with >= k photos with a face: template = normalised mean of its first k photos
    in file order (deterministic; no seed). Impostor scores: that template vs every photo of every
    OTHER identity (including identities with fewer than k photos), so ``n_impostor_pairs`` = sum over
    templates of (N - photos of its identity). Genuine scores: the template vs its identity's
    remaining (not fused) photos; an identity with exactly k photos has none. A stranger's photo
    compared with a mean template scores higher than with one photo, and more so the larger k, which
    is why these files exist beside the photo-vs-photo calibration.

    Cost: one (P, D) x (D, N) multiply in ``block``-row pieces (P ~ 1,700 x N ~ 9,100 for LFW at k=2,
    well under a second of BLAS); memory O(block x N + tail + genuine scores).
    Raises ValueError for k < 2, rows that are not L2-normalised, or no identity with >= k photos
    (or no photos of another identity to score against).
    """
    templates, t_label, labels, used, emb = fused_templates(embeddings, names, k)
    kk = int(k)
    if len(templates) == 0:
        raise ValueError(
            f"no identity has >= {kk} photos with a face (of {len(emb)} photos): nothing to fuse with K = {kk}"
        )
    counts = np.bincount(labels)
    n = len(emb)
    n_imp = int((n - counts[t_label]).sum())
    n_gen = int((counts[t_label] - kk).sum())
    if n_imp < 1:
        raise ValueError("need photos of at least 2 identities for impostor scores, got 1")
    keep = min(n_imp, tail if tail is not None else max(10_000, math.ceil(max(FMRS) * n_imp) + 2))
    logger.info(
        "fused calibration K=%d: %d templates, %d photos, %d impostor and %d genuine scores",
        kk,
        len(templates),
        n,
        n_imp,
        n_gen,
    )
    imp = _ImpostorTally(bins, keep)
    genuine: list[np.ndarray] = []
    for r0 in range(0, len(templates), block):
        r1 = min(len(templates), r0 + block)
        sims = templates[r0:r1] @ emb.T  # (r1-r0, N)
        same = t_label[r0:r1, None] == labels[None, :]
        imp.add(sims[~same])
        genuine.append(sims[same & ~used[None, :]])
    gen = np.sort(np.concatenate(genuine)) if genuine else np.zeros(0, np.float32)
    assert imp.n == n_imp and len(gen) == n_gen
    summary = _summarise(imp, gen, n_imp, bins=bins, curve_points=curve_points)
    return {
        "model": model,
        "template": "fused",
        "fused_k": kk,
        "selection": FUSED_SELECTION,
        "source": source,
        "n_images": n,
        "n_identities": len(counts),
        "n_templates": len(templates),
        "n_impostor_pairs": n_imp,
        "n_genuine_pairs": n_gen,
        **summary,
    }


def fused_watchlist_check(
    embeddings: npt.ArrayLike,
    names: Sequence[str] | np.ndarray,
    *,
    photo: object,
    fused: object,
    enroll_per_person: int = 2,
    set_aside: int = 2,
    seed: int = 0,
    targets: tuple[float, ...] = (1e-2, 1e-3),
) -> dict[str, object]:
    """Predicted vs measured FPIR of a FUSED watchlist on the open-set protocol
    (``sightline.eval.watchlist``: half the eligible identities listed with ``enroll_per_person``
    photos each, fused into one template; every photo of every other identity a stranger).

    photo: the model's ``Calibration`` (photo-vs-photo); fused: a ``FusedCalibrations`` of the model.
    For the measured operating points (lowest threshold with measured FPIR <= each target) it gives
    the FPIR predicted by the fused calibrations (one comparison per person, K = enroll_per_person)
    and by the photo calibration with N = persons (what was used before fused calibrations
    existed). For each target it also tunes the threshold the way ``watchlist tune --templates
    fused`` does and reports the FPIR and FNIR measured there.
    """
    from sightline.eval.watchlist import make_split, open_set_scores

    e = np.asarray(embeddings, dtype=np.float32)
    k = int(enroll_per_person)
    split = make_split(names, ~np.isnan(e[:, 0]), enroll_per_person=k, set_aside=set_aside, seed=seed)
    persons = len(split.enrolled)
    mix = {k: persons}
    sc = open_set_scores(e, split, "fused")

    def row(t: float) -> dict[str, float]:
        measured = sc.fpir(t)
        new = float(fused.est_fpir(t, mix))  # type: ignore[attr-defined]
        old = float(photo.est_fpir(t, persons))  # type: ignore[attr-defined]
        return {
            "threshold": t,
            "fpir_measured": measured,
            "fpir_predicted_fused_cal": new,
            "fpir_predicted_photo_cal": old,
            "ratio_fused_cal": new / measured if measured > 0 else math.inf,
            "ratio_photo_cal": old / measured if measured > 0 else math.inf,
            "fnir_measured": sc.fnir(t),
        }

    at_points = {
        f"{p.fpir_target:g}": row(p.threshold) for p in map(sc.fnir_at_fpir, targets) if math.isfinite(p.threshold)
    }
    tuned = {}
    for f in targets:
        t = float(fused.threshold_for_fpir(f, mix))  # type: ignore[attr-defined]
        t_old = float(photo.threshold_for_fpir(f, persons))  # type: ignore[attr-defined]
        tuned[f"{f:g}"] = {
            "fused_cal": {"threshold": t, "fpir_measured": sc.fpir(t), "fnir_measured": sc.fnir(t)},
            "photo_cal_n_persons": {
                "threshold": t_old,
                "fpir_measured": sc.fpir(t_old),
                "fnir_measured": sc.fnir(t_old),
            },
        }
    return {
        "model": str(getattr(photo, "model", "?")),
        "template": "fused",
        "fused_k": k,
        "split": split.describe(),
        "at_measured_operating_points": at_points,
        "tuned_for_target": tuned,
    }


def mixed_k_watchlist_check(
    embeddings: npt.ArrayLike,
    names: Sequence[str] | np.ndarray,
    *,
    photo: object,
    fused: object,
    max_photos: int = 10,
    seed: int = 0,
    targets: tuple[float, ...] = (1e-2, 1e-3),
) -> dict[str, object]:
    """Predicted vs measured FPIR of a fused list whose persons have DIFFERENT photo counts.

    Protocol (seeded): identities with >= 2 photos with a face are eligible; half of them (a seeded
    permutation) are listed, each with all but one of their photos (a seeded shuffle; at most
    ``max_photos``, so K_p runs from 1 to ``max_photos`` and persons beyond the largest calibrated K
    are included), fused into one template; every photo of every other identity is a stranger.
    For each target FPIR: the threshold ``FusedCalibrations.threshold_for_fpir`` chooses for the
    list's mix of K_p, and the FPIR measured there; plus, at the measured operating points, the
    predicted / measured ratio.
    """
    emb, nm = _check_embeddings(embeddings, names)
    _, labels = np.unique(nm, return_inverse=True)
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) < 2:
        raise ValueError(f"need at least 2 identities with >= 2 photos, found {len(eligible)}")
    rng = np.random.default_rng(seed)
    listed = np.sort(eligible[rng.permutation(len(eligible))[: len(eligible) // 2]])
    order = np.argsort(labels, kind="stable")
    starts = np.r_[0, np.cumsum(counts)]
    templates, ks = [], []
    for ident in listed:
        rows = order[starts[ident] : starts[ident + 1]]
        rows = rows[np.random.default_rng([seed, int(ident)]).permutation(len(rows))]
        pick = rows[: min(len(rows) - 1, int(max_photos))]
        t = emb[pick].astype(np.float64).sum(axis=0)
        templates.append(t / np.linalg.norm(t))
        ks.append(len(pick))
    tmat = np.asarray(templates, np.float32)
    strangers = emb[~np.isin(labels, listed)]
    top = (strangers @ tmat.T).max(axis=1).astype(np.float64)  # each stranger's best score over the list
    kv, kc = np.unique(ks, return_counts=True)
    mix = {int(k): int(c) for k, c in zip(kv, kc, strict=True)}
    n_persons = len(listed)

    def measured(t: float) -> float:
        return float((top >= t).mean())

    points = {}
    srt = np.sort(top)[::-1]
    for f in targets:
        k = math.floor(f * len(top))
        t_meas = float(np.nextafter(srt[k], np.inf))  # lowest threshold with measured FPIR <= f
        t_new = float(fused.threshold_for_fpir(f, mix))  # type: ignore[attr-defined]
        t_old = float(photo.threshold_for_fpir(f, n_persons))  # type: ignore[attr-defined]
        pred = float(fused.est_fpir(t_meas, mix))  # type: ignore[attr-defined]
        points[f"{f:g}"] = {
            "measured_operating_point": {
                "threshold": t_meas,
                "fpir_measured": measured(t_meas),
                "fpir_predicted_fused_cal": pred,
                "ratio_fused_cal": pred / measured(t_meas) if measured(t_meas) > 0 else math.inf,
                "fpir_predicted_photo_cal": float(photo.est_fpir(t_meas, n_persons)),  # type: ignore[attr-defined]
            },
            "tuned_fused_cal": {"threshold": t_new, "fpir_measured": measured(t_new)},
            "tuned_photo_cal_n_persons": {"threshold": t_old, "fpir_measured": measured(t_old)},
        }
    return {
        "model": str(getattr(photo, "model", "?")),
        "protocol": (
            f"seed {seed}: half of the {len(eligible)} identities with >= 2 photos listed, each with all but one "
            f"photo (at most {max_photos}), fused; every photo of every other identity a stranger"
        ),
        "listed_persons": n_persons,
        "strangers": len(top),
        "photos_per_person": {str(k): c for k, c in mix.items()},
        "points": points,
    }
