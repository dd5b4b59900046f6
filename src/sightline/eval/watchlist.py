"""Open-set watchlist evaluation (NIST FRVT 1:N protocol) on an identity-folder dataset.

    es = EmbeddedSet.load("lfw.npz")                         # or embed_files(...): embed once
    split = make_split(es.names, ~np.isnan(es.embeddings[:, 0]), enroll_per_person=1, seed=0)
    result = evaluate(es.embeddings, split, template="per-photo")
    result.to_dict()["fnir_at_fpir"]["0.01"]

Protocol (deterministic for a seed, stated in every result):

1. Eligible identities: those with at least ``min_photos`` photos (default ``set_aside + 1``, so each
   has a mated probe) of which at least ``set_aside`` (default ``enroll_per_person``) have a face.
2. Half of them (``floor(n / 2)``, a seeded permutation of the sorted names) are enrolled: the
   watchlist. Each enrolled person gets ``enroll_per_person`` photos with a face, the first of a seeded
   shuffle of their photos (the same seed gives K=2 the K=1 photo plus one more); every other photo
   of theirs is a **mated** probe.
3. Every photo of every other identity (not enrolled, including those with one photo) is a
   **non-mated** probe.
4. Each probe is searched against the whole list; see ``sightline.eval.det`` for FPIR, FNIR, rank-k.

Templates for a person with several photos (``template``):

- ``per-photo``: one template per photo, the person's score is the best of them (what the gallery and
  the live matcher do today).
- ``fused``: one template, the mean of the person's L2-normalised descriptors, renormalised.

Cost: one (Q, D) x (D, T) multiply (Q probes, T templates): ~9,000 x 1,200 for LFW, well under a second.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from sightline.eval.det import DetCurve, OpenSetScores, OperatingPoint

logger = logging.getLogger(__name__)

TemplateMode = Literal["per-photo", "fused"]
TEMPLATE_MODES: tuple[TemplateMode, ...] = ("per-photo", "fused")
#: FPIR operating points reported by default (1% and 0.1% of strangers raising an alert).
DEFAULT_FPIRS: tuple[float, ...] = (1e-2, 1e-3)
DEFAULT_RANKS: tuple[int, ...] = (1, 5)
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Split:
    """Who is enrolled with which photos, and which photos are probes (indices into the dataset).

    enrolled:     (P,) identity names of the list, sorted; a person's column is its position here.
    enroll_idx:   (P * K,) dataset rows enrolled, grouped by person in column order.
    enroll_col:   (P * K,) the column of each enrolled row.
    mated_idx:    (M,) dataset rows of mated probes; mated_col: (M,) their person's column.
    nonmated_idx: (U,) dataset rows of non-mated probes.
    """

    seed: int
    enroll_per_person: int
    set_aside: int
    min_photos: int
    n_identities: int
    n_eligible: int
    enrolled: tuple[str, ...]
    enroll_idx: I64
    enroll_col: I64
    mated_idx: I64
    mated_col: I64
    nonmated_idx: I64

    def describe(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "enroll_per_person": self.enroll_per_person,
            "set_aside": self.set_aside,
            "min_photos": self.min_photos,
            "identities": self.n_identities,
            "eligible_identities": self.n_eligible,
            "enrolled_persons": len(self.enrolled),
            "enrolled_photos": len(self.enroll_idx),
            "mated_probes": len(self.mated_idx),
            "nonmated_probes": len(self.nonmated_idx),
            "rule": (
                f"identities with >= {self.min_photos} photos (>= {self.set_aside} with a face) are eligible; "
                f"half of them (seeded permutation, seed {self.seed}) are enrolled with {self.enroll_per_person} "
                f"photo(s) each (the first of a seeded shuffle; {self.set_aside} set aside), their other photos "
                "are mated probes; every photo of every other identity is a non-mated probe"
            ),
        }


def make_split(
    names: npt.ArrayLike,
    has_face: npt.ArrayLike,
    *,
    enroll_per_person: int = 1,
    min_photos: int | None = None,
    set_aside: int | None = None,
    seed: int = 0,
) -> Split:
    """The deterministic split of the module docstring. names: (N,) identity per photo; has_face:
    (N,) bool.

    set_aside: the first ``set_aside`` photos with a face of each enrolled person's seeded shuffle are
    kept out of the probes (default ``enroll_per_person``: exactly the enrolled ones). Give runs with
    different K the largest K as ``set_aside`` (``min_photos`` then defaults to it + 1) so that they enroll the same
    persons and search the same probes: the only difference is then the extra enrollment photos.
    Raises ValueError when fewer than 2 identities are eligible (no list can be built beside
    non-enrolled ones)."""
    nm = np.asarray(names).astype(str)
    face = np.asarray(has_face, dtype=bool)
    if nm.ndim != 1 or face.shape != nm.shape:
        raise ValueError(f"names and has_face must both be (N,), got {nm.shape} and {face.shape}")
    k = int(enroll_per_person)
    if k < 1:
        raise ValueError(f"enroll_per_person must be >= 1, got {enroll_per_person}")
    aside = k if set_aside is None else int(set_aside)
    if aside < k:
        raise ValueError(f"set_aside must be >= enroll_per_person = {k}, got {aside}")
    mp = aside + 1 if min_photos is None else int(min_photos)
    if mp < aside + 1:
        raise ValueError(f"min_photos must be >= {aside + 1} (the photos set aside + a mated probe each), got {mp}")
    uniq, label = np.unique(nm, return_inverse=True)
    total = np.bincount(label, minlength=len(uniq))
    with_face = np.bincount(label[face], minlength=len(uniq))
    eligible = np.flatnonzero((total >= mp) & (with_face >= aside))
    if len(eligible) < 2:
        raise ValueError(
            f"need at least 2 identities with >= {mp} photos ({k} with a face) to enroll half of them; "
            f"found {len(eligible)} among {len(uniq)} identities"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(eligible[rng.permutation(len(eligible))[: len(eligible) // 2]])
    enrolled_mask = np.zeros(len(uniq), bool)
    enrolled_mask[chosen] = True
    enroll_idx: list[int] = []
    enroll_col: list[int] = []
    mated_idx: list[int] = []
    mated_col: list[int] = []
    order = np.argsort(label, kind="stable")
    starts = np.r_[0, np.cumsum(total)]
    for col, ident in enumerate(chosen):
        rows = order[starts[ident] : starts[ident + 1]]  # this identity's photos, dataset order
        shuffled = rows[np.random.default_rng([seed, int(ident)]).permutation(len(rows))]
        kept = shuffled[face[shuffled]][:aside]
        pick = kept[:k]
        enroll_idx += pick.tolist()
        enroll_col += [col] * k
        rest = np.setdiff1d(rows, kept)
        mated_idx += rest.tolist()
        mated_col += [col] * len(rest)
    nonmated = np.flatnonzero(~enrolled_mask[label])
    return Split(
        seed=int(seed),
        enroll_per_person=k,
        set_aside=aside,
        min_photos=mp,
        n_identities=len(uniq),
        n_eligible=len(eligible),
        enrolled=tuple(uniq[chosen].tolist()),
        enroll_idx=np.asarray(enroll_idx, np.int64),
        enroll_col=np.asarray(enroll_col, np.int64),
        mated_idx=np.asarray(mated_idx, np.int64),
        mated_col=np.asarray(mated_col, np.int64),
        nonmated_idx=nonmated.astype(np.int64),
    )


def fuse_templates(embeddings: npt.ArrayLike, owner: npt.ArrayLike, n_persons: int) -> npt.NDArray[np.float32]:
    """(P, D) float32: per person the mean of their L2-normalised rows, renormalised to unit length.
    embeddings: (T, D); owner: (T,) column in [0, n_persons) of each row (every person needs one)."""
    e = np.asarray(embeddings, dtype=np.float64)
    o = np.asarray(owner, dtype=np.int64)
    if e.ndim != 2 or o.shape != (len(e),):
        raise ValueError(f"embeddings must be (T, D) with (T,) owners, got {e.shape} and {o.shape}")
    counts = np.bincount(o, minlength=n_persons)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} person(s) have no template to fuse")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sums = np.zeros((n_persons, e.shape[1]))
    np.add.at(sums, o, e)
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def person_scores(
    probes: npt.ArrayLike, templates: npt.ArrayLike, owner: npt.ArrayLike, n_persons: int, template: TemplateMode
) -> npt.NDArray[np.float32]:
    """(Q, P) similarity of each probe to each enrolled person. probes: (Q, D) (NaN rows: no face,
    giving NaN rows); templates: (T, D) with owner (T,) sorted ascending (grouped by person)."""
    q = np.asarray(probes, dtype=np.float32)
    t = np.asarray(templates, dtype=np.float32)
    o = np.asarray(owner, dtype=np.int64)
    if template == "fused":
        return q @ fuse_templates(t, o, n_persons).T
    if template != "per-photo":
        raise ValueError(f"template must be one of {TEMPLATE_MODES}, got {template!r}")
    if len(o) and np.any(np.diff(o) < 0):
        raise ValueError("templates must be grouped by person (owner ascending)")
    sims = q @ t.T
    starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
    if len(starts) != n_persons:
        raise ValueError(f"every one of {n_persons} persons needs a template, {len(starts)} have")
    return np.maximum.reduceat(sims, starts, axis=1) if len(q) else np.zeros((0, n_persons), np.float32)


def open_set_scores(embeddings: npt.ArrayLike, split: Split, template: TemplateMode = "per-photo") -> OpenSetScores:
    """Search every probe of ``split`` against its list; embeddings: (N, D) L2-normalised, NaN rows
    where no face was found."""
    e = np.asarray(embeddings, dtype=np.float32)
    probes = np.concatenate([split.mated_idx, split.nonmated_idx])
    sims = person_scores(e[probes], e[split.enroll_idx], split.enroll_col, len(split.enrolled), template)
    mate = np.concatenate([split.mated_col, np.full(len(split.nonmated_idx), -1, np.int64)])
    return OpenSetScores.from_matrix(sims, mate)


@dataclass(frozen=True, eq=False)
class WatchlistEvalResult:
    """One (model, template mode) evaluation: operating points, ranks, the DET curve and the split."""

    model: str
    template: TemplateMode
    split: Split
    operating_points: tuple[OperatingPoint, ...]
    rank: dict[int, float]
    det: DetCurve
    mated_no_face: int
    nonmated_no_face: int
    calibration_check: tuple[dict[str, float], ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        def r(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        return {
            "model": self.model,
            "template": self.template,
            "split": self.split.describe(),
            "fnir_at_fpir": {
                f"{p.fpir_target:g}": {"fnir": r(p.fnir), "threshold": r(p.threshold), "fpir": r(p.fpir)}
                for p in self.operating_points
            },
            "rank": {f"rank{k}": r(v) for k, v in self.rank.items()},
            "mated_probes_without_face": self.mated_no_face,
            "nonmated_probes_without_face": self.nonmated_no_face,
            "calibration_check": [{k: r(v) for k, v in row.items()} for row in self.calibration_check],
            "det_points": len(self.det.threshold),
        }


def evaluate(
    embeddings: npt.ArrayLike,
    split: Split,
    *,
    model: str = "dlib_resnet_v1",
    template: TemplateMode = "per-photo",
    fpirs: tuple[float, ...] = DEFAULT_FPIRS,
    ranks: tuple[int, ...] = DEFAULT_RANKS,
    calibration: object | None = None,
) -> WatchlistEvalResult:
    """Run the protocol for one template mode. ``calibration`` (a ``Calibration``): also report, at
    each operating point, the FPIR the calibration predicts for this list (``est_fpir`` with N = the
    templates compared per search) beside the measured one — the check of ``sightline watchlist
    tune``'s estimate."""
    e = np.asarray(embeddings, dtype=np.float32)
    sc = open_set_scores(e, split, template)
    points = tuple(sc.fnir_at_fpir(f) for f in fpirs)
    check: list[dict[str, float]] = []
    if calibration is not None:
        # comparisons per search: every enrolled photo (per-photo), one template per person (fused)
        n = len(split.enroll_idx) if template == "per-photo" else len(split.enrolled)
        thresholds = [p.threshold for p in points] + [
            calibration.threshold_for_fmr(f)  # type: ignore[attr-defined]
            for f in (1e-3, 1e-4, 1e-5)
        ]
        for t in thresholds:
            if not math.isfinite(t):
                continue
            check.append(
                {
                    "threshold": t,
                    "fmr_per_comparison": calibration.est_fmr(t),  # type: ignore[attr-defined]
                    "fpir_measured": sc.fpir(t),
                    "fpir_predicted": calibration.est_fpir(t, n),  # type: ignore[attr-defined]
                    "fnir_measured": sc.fnir(t),
                }
            )
    no_face = np.isnan(e[:, 0]) if len(e) else np.zeros(0, bool)
    result = WatchlistEvalResult(
        model=model,
        template=template,
        split=split,
        operating_points=points,
        rank={k: sc.rank_k(k) for k in ranks},
        det=sc.det(),
        mated_no_face=int(no_face[split.mated_idx].sum()),
        nonmated_no_face=int(no_face[split.nonmated_idx].sum()),
        calibration_check=tuple(check),
    )
    logger.info(
        "open-set %s/%s: %d enrolled, FNIR %s at FPIR %s, rank-1 %.4f",
        model,
        template,
        len(split.enrolled),
        [round(p.fnir, 4) for p in points],
        [p.fpir_target for p in points],
        result.rank.get(1, math.nan),
    )
    return result
