"""What a similarity means for one descriptor model: the impostor-score calibration.

A threshold only means something for the model that produced the scores, so each embedder ships a
``{model}.calibration.json`` beside its code (built by ``sightline eval calibrate`` from an
identity-labelled set, see ``sightline.eval.calibration``). It holds the impostor curve: for a
similarity s, the false-match rate FMR(s) = the fraction of pairs of photos of two DIFFERENT people
whose similarity is >= s. ``est_fmr`` interpolates that curve (linearly in log10 FMR), so a score can
be told as "about 1 in 20,000 strangers score this high".

Limits, stated rather than hidden: the curve is measured on a finite set of N impostor pairs, so
above the highest impostor score the FMR is only known to be below 1/N (``is_bound``); it describes
the population it was built on (e.g. LFW: news photos of public figures), and a deployment's own
cameras and people can shift it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_PACKAGE = "sightline.vision.embed"
_SUFFIX = ".calibration.json"


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
    """

    model: str
    default_threshold: float
    default_fmr: float
    curve_sim: npt.NDArray[np.float64]
    curve_fmr: npt.NDArray[np.float64]
    n_impostor_pairs: int

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
    """Models with a calibration shipped in the package."""
    return sorted(p.name[: -len(_SUFFIX)] for p in resources.files(_PACKAGE).iterdir() if p.name.endswith(_SUFFIX))


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
