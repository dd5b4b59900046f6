"""Per-watchlist thresholds from a target false-alert rate for that list's size.

    result = tune_watchlist(gallery, "wanted", max_false_alerts_per_1000=10)   # stores the threshold
    result.threshold, result.fmr_per_comparison, result.est_fpir

A similarity threshold fixes the false-match rate per COMPARISON (FMR); a stranger searched against a
list of N people has N chances, so the rate of strangers raising an alert (FPIR) grows with N. This
module turns "at most F false alerts per 1,000 strangers" into the threshold for the list's current
size, from the model's impostor calibration (``Calibration.threshold_for_fpir``):

    FPIR(t, N) ~= 1 - (1 - FMR(t))^N    =>    FMR = 1 - (1 - F / 1000)^(1 / N),  t = FMR^-1

Which estimate and how good: the independence formula above on the shipped calibration curve (41
million LFW impostor pairs), not measured max-over-N scores. Checked against the open-set evaluation
(``sightline eval watchlist``, 588 listed people): it over-states FPIR by 1.3x at FPIR 1% and 2.4x at
0.1% (some strangers resemble many listed people, others none), so a tuned list raises fewer false
alerts than asked for and misses somewhat more listed people than necessary. See docs/BENCHMARKS.md §6.

N counts templates, not persons: the live matcher and search compare a stranger with every photo
enrolled for the list (a person's score is their best photo), so a person with 3 photos gives 3
chances. On LFW with 2 photos per person, counting persons under-stated FPIR (0.88% predicted, 0.99%
measured at FPIR 1%); counting photos keeps the estimate on the safe side.

Fused templates (one mean template per person, ``sightline eval watchlist --template fused``) are NOT
described by this calibration: their impostor scores run higher than photo-vs-photo ones, and on LFW
the estimate under-stated FPIR 1.3-1.8x (dlib) and 2-4x (fusion model). A gallery that adopts fused
templates needs a calibration measured on fused templates before this module can tune it.

A list that grows keeps its threshold: tune again after enrolling (``watchlist tune`` prints the list
size the threshold was chosen for).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sightline.gallery.service import Gallery

logger = logging.getLogger(__name__)

METHOD = "independence: FPIR = 1 - (1 - FMR)^N on the model's impostor calibration"


class TuningError(ValueError):
    """The target cannot be met or measured (message says why and what would work)."""


@dataclass(frozen=True)
class TuneResult:
    """A threshold chosen for one watchlist.

    list_size: persons the threshold was chosen for; max_false_alerts_per_1000: the target (strangers
    in 1,000 raising an alert); fmr_per_comparison: the per-comparison rate that target implies;
    threshold: cosine similarity (alert when >= it); previous_threshold: the list's stored threshold
    before (None: the model default); est_fpir: the calibration's estimate at ``threshold``; stored:
    whether the threshold was written to the gallery (False for a dry run).
    """

    watchlist: str
    model: str
    list_size: int
    comparisons: int
    max_false_alerts_per_1000: float
    fmr_per_comparison: float
    threshold: float
    previous_threshold: float | None
    default_threshold: float
    est_fpir: float
    method: str
    stored: bool


def choose_threshold(calibration: object, max_false_alerts_per_1000: float, list_size: int) -> tuple[float, float]:
    """(threshold, fmr_per_comparison) for at most ``max_false_alerts_per_1000`` strangers in 1,000
    alerting on a list of ``list_size``. Raises TuningError when the calibration cannot resolve it."""
    f = float(max_false_alerts_per_1000)
    if not 0.0 < f < 1000.0:
        raise TuningError(f"max false alerts per 1000 must be in (0, 1000), got {max_false_alerts_per_1000}")
    if list_size < 1:
        raise TuningError(f"list size must be >= 1 person, got {list_size}")
    fpir = f / 1000.0
    try:
        thr = float(calibration.threshold_for_fpir(fpir, list_size))  # type: ignore[attr-defined]
    except ValueError as exc:
        raise TuningError(str(exc)) from None
    return thr, float(calibration.est_fmr(thr))  # type: ignore[attr-defined]


def tune_watchlist(
    gallery: Gallery,
    name: str,
    max_false_alerts_per_1000: float,
    *,
    list_size: int | None = None,
    dry_run: bool = False,
) -> TuneResult:
    """Choose and (unless ``dry_run``) store the threshold of watchlist ``name``.

    list_size: plan for this many persons (default: the list's current member count; an empty list
    needs it), each with as many photos as the list's members have on average (1 when empty).
    Raises ``UnknownWatchlistError`` for a missing list, TuningError for a target that cannot be met.
    """
    wl = gallery.get_watchlist(name)
    persons, templates = list_counts(gallery, wl.name)
    n = persons if list_size is None else int(list_size)
    if n < 1:
        raise TuningError(
            f"watchlist {wl.name!r} has no members: enroll people first, or give the list size to plan for"
        )
    per_person = templates / persons if persons else 1.0
    comparisons = max(n, math.ceil(n * per_person - 1e-9))
    cal = gallery.engine.calibration
    thr, fmr = choose_threshold(cal, max_false_alerts_per_1000, comparisons)
    if not dry_run:
        gallery.store.update_watchlist(wl.id, description=wl.description, threshold=thr)
    logger.info(
        "watchlist %s: threshold %.4f for <= %s false alerts per 1000 strangers at %d persons (FMR %.3g)%s",
        wl.name,
        thr,
        max_false_alerts_per_1000,
        n,
        fmr,
        " (dry run)" if dry_run else "",
    )
    return TuneResult(
        watchlist=wl.name,
        model=str(gallery.engine.model),
        list_size=n,
        comparisons=comparisons,
        max_false_alerts_per_1000=float(max_false_alerts_per_1000),
        fmr_per_comparison=fmr,
        threshold=thr,
        previous_threshold=wl.threshold,
        default_threshold=float(cal.default_threshold),
        est_fpir=float(cal.est_fpir(thr, comparisons)),  # type: ignore[attr-defined]
        method=METHOD,
        stored=not dry_run,
    )


@dataclass(frozen=True)
class ScoreMeaning:
    """What one similarity means against one list (for the CLI and the console).

    est_fmr: chance a stranger scores this high against ONE photo; est_fpir: against SOME photo of a
    list of ``list_size`` templates (the false-alert chance that matters for this list); text: one line.
    """

    similarity: float
    list_size: int
    est_fmr: float
    est_fpir: float
    text: str


def list_counts(gallery: Gallery, watchlist: str | None) -> tuple[int, int]:
    """(persons, templates of the engine's model) a search of ``watchlist`` (None: the whole gallery)
    compares against. Raises ``UnknownWatchlistError`` for a missing list."""
    name = None if watchlist is None else gallery.get_watchlist(watchlist).name
    return gallery.store.template_counts(gallery.engine.model, name)


def score_meaning(calibration: object, similarity: float, size: int) -> ScoreMeaning:
    """The list-size aware meaning of ``similarity`` (see ``Calibration.est_fpir``); ``size``: the
    comparisons per search, i.e. the templates of the list (``list_counts(...)[1]``)."""
    n = max(1, int(size))
    return ScoreMeaning(
        similarity=float(similarity),
        list_size=n,
        est_fmr=float(calibration.est_fmr(similarity)),  # type: ignore[attr-defined]
        est_fpir=float(calibration.est_fpir(similarity, n)),  # type: ignore[attr-defined]
        text=str(calibration.describe_for_list(similarity, n)),  # type: ignore[attr-defined]
    )
