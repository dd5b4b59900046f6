"""What a similarity means for one descriptor model: the impostor-score calibration.

A threshold only means something for the model that produced the scores, so each embedder ships a
``{model}.calibration.json`` beside its code (built by ``sightline eval calibrate`` from an
identity-labelled set, see ``sightline.eval.calibration``). It holds the impostor curve: for a
similarity s, the false-match rate FMR(s) = the fraction of pairs of photos of two DIFFERENT people
whose similarity is >= s. ``est_fmr`` interpolates that curve (linearly in log10 FMR), so a score can
be told as "about 1 in 20,000 strangers score this high".

Fused templates (one template per person, the normalised mean of their K photos; the matcher's
``templates="fused"``) have their own impostor curves, ``{model}.fused_k{K}.calibration.json`` for
K = 2..5 (``sightline eval calibrate --fused-k K``): a stranger's photo scores higher against a mean
of K photos than against one photo, so the photo-vs-photo file under-states a fused list's false
alerts (1.3-1.8x for dlib, 2-4x for the fusion model on LFW). ``FusedCalibrations`` holds the set
and answers for a list whose persons have different K.

Limits, stated rather than hidden: the curve is measured on a finite set of N impostor pairs, so
above the highest impostor score the FMR is only known to be below 1/N (``is_bound``); it describes
the population it was built on (e.g. LFW: news photos of public figures), and a deployment's own
cameras and people can shift it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_PACKAGE = "sightline.vision.embed"
_SUFFIX = ".calibration.json"
_FUSED = re.compile(r"^(?P<model>.+)\.fused_k(?P<k>\d+)\.calibration\.json$")
TemplateMode = Literal["per-photo", "fused"]


def count_words(n: float) -> str:
    """A count for people to read: 2 significant figures, '40 million' style above a million."""
    if n >= 1e9:
        return f"{float(f'{n / 1e9:.2g}'):g} billion"
    if n >= 1e6:
        return f"{float(f'{n / 1e6:.2g}'):g} million"
    if n >= 100:
        return f"{round(float(f'{n:.2g}')):,}"
    return f"{max(1, round(n)):,}"


def _check_list_size(list_size: int) -> int:
    n = int(list_size)
    if n < 1:
        raise ValueError(f"list_size must be >= 1 person, got {list_size}")
    return n


@dataclass(frozen=True, eq=False)
class Calibration:
    """Impostor-score calibration of one model.

    model:             the descriptor model family (``Embedder.model``).
    default_threshold: similarity at the default FMR (1e-3 = 1 false match per 1,000 comparisons
                       with strangers); a watchlist without its own threshold uses this.
    default_fmr:       the FMR the default threshold was chosen for.
    curve_sim:         (K,) float64 similarities, strictly increasing.
    curve_fmr:         (K,) float64 FMR at each similarity, strictly decreasing, in (0, 1]; the last
                       point is the highest impostor score seen.
    n_impostor_pairs:  how many impostor pairs the curve was measured on (resolution 1/N).
    template:          what the impostor scores compare a photo with: "per-photo" (another photo)
                       or "fused" (the normalised mean of ``fused_k`` photos of another person).
    fused_k:           photos per fused template (>= 2) when ``template`` is "fused", else None.
    """

    model: str
    default_threshold: float
    default_fmr: float
    curve_sim: npt.NDArray[np.float64]
    curve_fmr: npt.NDArray[np.float64]
    n_impostor_pairs: int
    template: TemplateMode = "per-photo"
    fused_k: int | None = None

    def __post_init__(self) -> None:
        sim = np.asarray(self.curve_sim, dtype=np.float64)
        fmr = np.asarray(self.curve_fmr, dtype=np.float64)
        if sim.ndim != 1 or sim.shape != fmr.shape or len(sim) < 2:
            raise ValueError(f"curve needs >= 2 (similarity, fmr) points, got {sim.shape} and {fmr.shape}")
        if not (np.all(np.diff(sim) > 0) and np.all(np.diff(fmr) < 0)):
            raise ValueError("curve must have strictly increasing similarity and strictly decreasing fmr")
        if not (np.all(fmr > 0) and np.all(fmr <= 1)):
            raise ValueError("curve fmr values must lie in (0, 1]")
        if self.n_impostor_pairs < 1:
            raise ValueError(f"n_impostor_pairs must be >= 1, got {self.n_impostor_pairs}")
        if not 0 < self.default_fmr < 1:
            raise ValueError(f"default_fmr must be in (0, 1), got {self.default_fmr}")
        if self.template == "per-photo":
            if self.fused_k is not None:
                raise ValueError(f"fused_k is only for template 'fused', got {self.fused_k} with 'per-photo'")
        elif self.template == "fused":
            if self.fused_k is None or int(self.fused_k) < 2:
                raise ValueError(f"a fused-template calibration needs fused_k >= 2, got {self.fused_k}")
        else:
            raise ValueError(f"template must be 'per-photo' or 'fused', got {self.template!r}")
        sim.setflags(write=False)
        fmr.setflags(write=False)
        object.__setattr__(self, "curve_sim", sim)
        object.__setattr__(self, "curve_fmr", fmr)

    # ---- similarity -> FMR ----------------------------------------------------------------------
    @property
    def min_fmr(self) -> float:
        """The resolution of the calibration: 1 / n_impostor_pairs."""
        return 1.0 / self.n_impostor_pairs

    def is_bound(self, similarity: float) -> bool:
        """True when ``similarity`` is above every impostor score seen: est_fmr is then only an
        upper bound (the true rate is below 1/n_impostor_pairs)."""
        return float(similarity) > float(self.curve_sim[-1])

    def est_fmr(self, similarity: float) -> float:
        """Estimated false-match rate per comparison for a score of ``similarity``.

        Log10 FMR is interpolated linearly between table points. Above the highest impostor score:
        1/n_impostor_pairs, an upper bound (see ``is_bound``). Below the table's first point (the
        median impostor score) a straight line in log10 FMR to FMR 1 at similarity -1: coarse, and
        far from any threshold anyone would use.
        """
        s = float(similarity)
        if math.isnan(s):
            raise ValueError("similarity is NaN")
        if self.is_bound(s):
            return self.min_fmr
        log_fmr = np.log10(self.curve_fmr)
        if s >= self.curve_sim[0]:
            return max(self.min_fmr, float(10 ** np.interp(s, self.curve_sim, log_fmr)))
        s0 = float(self.curve_sim[0])
        if s <= -1.0 or s0 <= -1.0:
            return 1.0
        frac = (s - (-1.0)) / (s0 - (-1.0))
        return float(10 ** (frac * log_fmr[0]))

    def threshold_for_fmr(self, fmr: float) -> float:
        """The similarity at which about ``fmr`` of strangers score at least as high (inverse of
        est_fmr). Raises ValueError for an FMR outside (1/n_impostor_pairs, 1): a rate below the
        calibration's resolution cannot be measured from it."""
        f = float(fmr)
        if not self.min_fmr <= f < 1.0:
            raise ValueError(
                f"fmr must be in [{self.min_fmr:.3g}, 1): the calibration of {self.model} was measured on "
                f"{self.n_impostor_pairs:,} impostor pairs, got {fmr}"
            )
        log_fmr = np.log10(self.curve_fmr)
        lf = math.log10(f)
        if lf <= log_fmr[0]:
            # log_fmr decreasing: reverse both for np.interp
            return float(np.interp(lf, log_fmr[::-1], self.curve_sim[::-1]))
        s0 = float(self.curve_sim[0])
        return -1.0 + (s0 + 1.0) * lf / float(log_fmr[0])

    def describe(self, similarity: float) -> str:
        """One line saying what a score means, e.g. 'about 1 in 20,000 strangers score this high'."""
        if self.is_bound(similarity):
            return (
                f"fewer than 1 in {count_words(self.n_impostor_pairs)} strangers score this high "
                f"(higher than any of {self.n_impostor_pairs:,} impostor pairs in calibration)"
            )
        if similarity < self.curve_sim[0]:  # below the median impostor score
            return "more than half of strangers score this high"
        return f"about 1 in {count_words(1.0 / self.est_fmr(similarity))} strangers score this high"

    # ---- list-size aware: a stranger searched against N people ---------------------------------
    def est_fpir(self, similarity: float, list_size: int) -> float:
        """Estimated chance that a stranger (someone not on the list) scores at least ``similarity``
        against SOME template of a list: the false-positive identification rate
        FPIR(s, N) = 1 - (1 - FMR(s))^N, N = ``list_size``, the comparisons per search (the list's
        templates: photos, as the matcher scores a person by their best photo).

        The formula treats the N comparisons as independent. Against the measured open-set FPIR on
        LFW (588 listed people, docs/BENCHMARKS.md §6) it over-states FPIR 1.3x at FPIR 1% and 2.4x at
        0.1% (some strangers resemble many listed people, others none, which concentrates the false
        alerts on fewer strangers), so a threshold chosen with it errs towards fewer false alerts.
        """
        n = _check_list_size(list_size)
        fmr = self.est_fmr(similarity)
        return float(-math.expm1(n * math.log1p(-min(fmr, 1.0 - 1e-16))))

    def threshold_for_fpir(self, fpir: float, list_size: int) -> float:
        """The similarity at which about ``fpir`` of strangers would match someone on a list of
        ``list_size`` templates (inverse of ``est_fpir``): the per-comparison FMR 1 - (1 - fpir)^(1/N).
        Raises ValueError when that FMR is below the calibration's resolution (list too large or
        ``fpir`` too small for what was measured)."""
        n = _check_list_size(list_size)
        f = float(fpir)
        if not 0.0 < f < 1.0:
            raise ValueError(f"fpir must be in (0, 1), got {fpir}")
        fmr = -math.expm1(math.log1p(-f) / n)
        if fmr < self.min_fmr:
            raise ValueError(
                f"a false-alert rate of {f:g} on a list of {n:,} people needs a false-match rate of {fmr:.2g} per "
                f"comparison, below what the calibration of {self.model} can resolve "
                f"({self.min_fmr:.2g}, {self.n_impostor_pairs:,} impostor pairs)"
            )
        return self.threshold_for_fmr(fmr)

    def describe_for_list(self, similarity: float, list_size: int) -> str:
        """One line: how likely a stranger is to score this high against ``list_size`` enrolled photos."""
        n = _check_list_size(list_size)
        p = self.est_fpir(similarity, n)
        who = f"{n:,} enrolled photos" if n != 1 else "one enrolled photo"
        if self.is_bound(similarity):
            return f"fewer than 1 in {count_words(1.0 / p)} strangers score this high against {who}"
        if p >= 0.5:
            return f"most strangers ({100 * p:.0f}%) score this high against {who}"
        return f"about 1 in {count_words(1.0 / p)} strangers score this high against {who}"

    # ---- persistence ----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Calibration:
        """Build from the JSON document ``sightline eval calibrate`` writes (extra keys are kept there
        for people, ignored here). Raises ValueError naming a missing or bad field."""
        try:
            curve = np.asarray(doc["curve"], dtype=np.float64)
            if curve.ndim != 2 or curve.shape[1] != 2:
                raise ValueError(f"'curve' must be a list of [similarity, fmr] pairs, got {curve.shape}")
            return cls(
                model=str(doc["model"]),
                default_threshold=float(doc["default_threshold"]),
                default_fmr=float(doc["default_fmr"]),
                curve_sim=curve[:, 0],
                curve_fmr=curve[:, 1],
                n_impostor_pairs=int(doc["n_impostor_pairs"]),
                template=str(doc.get("template", "per-photo")),  # type: ignore[arg-type]
                fused_k=None if doc.get("fused_k") is None else int(doc["fused_k"]),
            )
        except KeyError as exc:
            raise ValueError(f"calibration is missing the field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"calibration has a malformed field: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration JSON file."""
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def builtin_models() -> list[str]:
    """Models with a (photo-vs-photo) calibration shipped in the package."""
    return sorted(
        p.name[: -len(_SUFFIX)]
        for p in resources.files(_PACKAGE).iterdir()
        if p.name.endswith(_SUFFIX) and not _FUSED.match(p.name)
    )


def builtin_fused_ks(model: str) -> list[int]:
    """The K (photos per fused template) with a fused-template calibration shipped for ``model``."""
    return list(_shipped_fused_ks(model))


@functools.cache
def _shipped_fused_ks(model: str) -> tuple[int, ...]:
    found = (_FUSED.match(p.name) for p in resources.files(_PACKAGE).iterdir())
    return tuple(sorted(int(m["k"]) for m in found if m is not None and m["model"] == model))


def load_builtin(model: str) -> Calibration:
    """The calibration shipped for ``model`` (``sightline/vision/embed/{model}.calibration.json``).
    Raises FileNotFoundError listing the models that have one."""
    res = resources.files(_PACKAGE) / f"{model}{_SUFFIX}"
    if not res.is_file():
        raise FileNotFoundError(
            f"no calibration shipped for model {model!r}; available: {', '.join(builtin_models()) or 'none'}"
        )
    try:
        cal = Calibration.from_json(json.loads(res.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise ValueError(f"{res}: {exc}") from None
    if cal.model != model:
        raise ValueError(f"{res}: holds the calibration of {cal.model!r}, not {model!r}")
    logger.debug("loaded calibration of %s (%d impostor pairs)", model, cal.n_impostor_pairs)
    return cal


def fused_filename(model: str, k: int) -> str:
    """``{model}.fused_k{K}.calibration.json``: the file name of a fused-template calibration."""
    return f"{model}.fused_k{int(k)}{_SUFFIX}"


def load_builtin_fused(model: str, k: int) -> Calibration:
    """The fused-template calibration shipped for ``model`` and K = ``k`` photos per template
    (``sightline/vision/embed/{model}.fused_k{k}.calibration.json``). Raises ValueError for k < 2
    (one photo is not fused: use ``load_builtin``) and FileNotFoundError naming the K that exist.
    For a person with more photos than any shipped K use ``FusedCalibrations.for_k``.

    Read once per process: the files are package data and a ``Calibration`` is immutable, so every
    caller (an API response describing many alerts, the matcher, tuning) shares one parsed copy."""
    return _load_builtin_fused(model, int(k))


@functools.cache
def _load_builtin_fused(model: str, kk: int) -> Calibration:
    if kk < 2:
        raise ValueError(f"a fused template averages K >= 2 photos, got K = {kk}; one photo: load_builtin({model!r})")
    res = resources.files(_PACKAGE) / fused_filename(model, kk)
    if not res.is_file():
        ks = builtin_fused_ks(model)
        have = f"K = {', '.join(map(str, ks))}" if ks else "none"
        raise FileNotFoundError(
            f"no fused-template calibration shipped for model {model!r} with K = {kk} (shipped: {have}); "
            f"build one with `sightline eval calibrate EMB.npz --fused-k {kk} --model {model} --out "
            f"{fused_filename(model, kk)}`"
        )
    try:
        cal = Calibration.from_json(json.loads(res.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise ValueError(f"{res}: {exc}") from None
    if cal.model != model or cal.template != "fused" or cal.fused_k != kk:
        raise ValueError(
            f"{res}: holds the {cal.template} calibration of {cal.model!r} (K={cal.fused_k}), not fused K={kk} "
            f"of {model!r}"
        )
    return cal


def _check_mix(persons_by_k: Mapping[int, int]) -> dict[int, int]:
    mix: dict[int, int] = {}
    for k, n in persons_by_k.items():
        kk, nn = int(k), int(n)
        if kk < 1 or nn < 0:
            raise ValueError(f"persons_by_k maps photos per person (>= 1) to persons (>= 0), got {k}: {n}")
        if nn:
            mix[kk] = mix.get(kk, 0) + nn
    if not mix:
        raise ValueError("persons_by_k must count at least one person")
    return mix


@dataclass(frozen=True, eq=False)
class FusedCalibrations:
    """What a similarity means against a list of FUSED templates, one per person, when persons have
    different numbers of photos K_p.

    photo: the photo-vs-photo calibration (a person with one photo is matched by that photo).
    by_k:  K -> the calibration of templates fused from K photos, for the measured K (2..5 shipped).

    A stranger makes ONE comparison per person, against a template of that person's K_p, so

        FPIR(t) ~= 1 - prod_p (1 - FMR_{K_p}(t))

    (the independence estimate of ``Calibration.est_fpir``, one factor per person), inverted for a
    target by bisection (``threshold_for_fpir``). A person with more photos than the largest
    measured K uses that K's curve. On LFW the impostor score at FMR 1e-3 rises with K (dlib 0.928
    for one photo, 0.935 / 0.937 / 0.939 / 0.939 for K = 2..5) and flattens; measured up to K = 10
    (not shipped, docs/results/fused_calibration_trend.json), at the K=5 file's thresholds for FMR
    1e-3 / 1e-4 templates of 6-10 photos have FMR 1.1-1.2e-3 / 1.1-1.4e-4 (dlib) and 1.2-1.4e-3 /
    1.2-1.7e-4 (fusion model): for such persons the estimate under-states by up to 1.2x (dlib) and
    1.7x (fusion model).
    """

    photo: Calibration
    by_k: Mapping[int, Calibration]

    def __post_init__(self) -> None:
        by_k = {int(k): c for k, c in self.by_k.items()}
        if not by_k:
            raise ValueError("by_k needs at least one fused calibration (K >= 2)")
        for k, c in by_k.items():
            if c.template != "fused" or c.fused_k != k or c.model != self.photo.model:
                raise ValueError(
                    f"by_k[{k}] must be the fused K={k} calibration of {self.photo.model!r}, got the {c.template} "
                    f"calibration of {c.model!r} (K={c.fused_k})"
                )
        if self.photo.template != "per-photo":
            raise ValueError("photo must be a per-photo calibration")
        object.__setattr__(self, "by_k", dict(sorted(by_k.items())))

    @classmethod
    def builtin(cls, model: str, photo: Calibration | None = None) -> FusedCalibrations:
        """Every shipped fused calibration of ``model`` (and its photo calibration unless given).
        Raises FileNotFoundError when none is shipped for the model."""
        ks = builtin_fused_ks(model)
        if not ks:
            raise FileNotFoundError(
                f"no fused-template calibration shipped for model {model!r}: fused templates cannot be given "
                f"an honest threshold; build them with `sightline eval calibrate EMB.npz --fused-k K --model {model}`"
            )
        return cls(photo if photo is not None else load_builtin(model), {k: load_builtin_fused(model, k) for k in ks})

    @property
    def model(self) -> str:
        return self.photo.model

    @property
    def k_max(self) -> int:
        return max(self.by_k)

    def for_k(self, k: int) -> Calibration:
        """The calibration describing a person with ``k`` photos: the photo one for k = 1, else the
        largest measured K <= k (K = k when shipped; the largest K for more photos)."""
        kk = int(k)
        if kk < 1:
            raise ValueError(f"a person needs >= 1 photo, got {k}")
        measured = [m for m in self.by_k if m <= kk]
        return self.by_k[max(measured)] if measured else self.photo

    def est_fmr(self, similarity: float, k: int) -> float:
        """Chance a stranger scores ``similarity`` or more against one person with ``k`` photos."""
        return self.for_k(k).est_fmr(similarity)

    def est_fpir(self, similarity: float, persons_by_k: Mapping[int, int]) -> float:
        """Chance a stranger scores ``similarity`` or more against SOME person of a fused list;
        ``persons_by_k``: photos per person -> persons with that many (e.g. {1: 3, 2: 40, 5: 2})."""
        mix = _check_mix(persons_by_k)
        log_pass = sum(n * math.log1p(-min(self.est_fmr(similarity, k), 1.0 - 1e-16)) for k, n in mix.items())
        return float(-math.expm1(log_pass))

    def min_fpir(self, persons_by_k: Mapping[int, int]) -> float:
        """The smallest FPIR the calibrations resolve for this list (every curve at 1/n_impostor_pairs)."""
        mix = _check_mix(persons_by_k)
        return float(-math.expm1(sum(n * math.log1p(-self.for_k(k).min_fmr) for k, n in mix.items())))

    def threshold_for_fpir(self, fpir: float, persons_by_k: Mapping[int, int]) -> float:
        """The lowest similarity (to 1e-7) whose ``est_fpir`` is <= ``fpir``, by bisection (est_fpir
        falls monotonically with the similarity). Raises ValueError when ``fpir`` is outside (0, 1)
        or below what the calibrations resolve for this list (``min_fpir``)."""
        mix = _check_mix(persons_by_k)
        f = float(fpir)
        if not 0.0 < f < 1.0:
            raise ValueError(f"fpir must be in (0, 1), got {fpir}")
        floor = self.min_fpir(mix)
        if f < floor:
            n = sum(mix.values())
            raise ValueError(
                f"a false-alert rate of {f:g} on a fused list of {n:,} people is below what the fused calibrations "
                f"of {self.model} can resolve ({floor:.2g}: each measured on a few million impostor scores)"
            )
        lo = -1.0
        hi = float(np.nextafter(max(float(self.for_k(k).curve_sim[-1]) for k in mix), np.inf))
        if self.est_fpir(lo, mix) <= f:
            return lo
        while hi - lo > 1e-7:
            mid = 0.5 * (lo + hi)
            if self.est_fpir(mid, mix) <= f:
                hi = mid
            else:
                lo = mid
        return hi

    def describe_for_list(self, similarity: float, persons_by_k: Mapping[int, int]) -> str:
        """One line: how likely a stranger is to score this high against a fused list."""
        mix = _check_mix(persons_by_k)
        n = sum(mix.values())
        p = self.est_fpir(similarity, mix)
        who = f"{n:,} fused templates" if n != 1 else "one fused template"
        if all(self.for_k(k).is_bound(similarity) for k in mix):
            return f"fewer than 1 in {count_words(1.0 / p)} strangers score this high against {who}"
        if p >= 0.5:
            return f"most strangers ({100 * p:.0f}%) score this high against {who}"
        return f"about 1 in {count_words(1.0 / p)} strangers score this high against {who}"
