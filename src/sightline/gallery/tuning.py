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

Fused templates (``templates="fused"``: one template per person, the normalised mean of their
photos; ``WatchConfig.templates``) are NOT described by the photo calibration: a stranger scores
higher against a mean of K photos than against one photo, and on LFW the photo calibration
under-stated a fused list's FPIR 1.3-1.8x (dlib) and 2-4x (fusion model). They are tuned with the
fused-template calibrations (``FusedCalibrations``: one impostor curve per K = 2..5 photos, measured
by ``sightline eval calibrate --fused-k K``). A stranger then makes ONE comparison per person, against
a template of that person's photo count K_p:

    FPIR(t) ~= 1 - prod_p (1 - FMR_{K_p}(t))        solved for t by bisection

Checked on LFW dev (seeds 0-4, docs/results/fused_watchlist_check.json and fused_mixed_k_check.json):
tuned for FPIR 1%, a list of 315 persons x 2 photos measured 0.67-1.00% (dlib) and 0.64-1.05% (fusion
model), where the photo calibration's threshold gave 1.6-2.5% and 2.8-3.6%; a list of 588 persons with
1-10 photos each measured 0.83-1.34% and 0.75-1.27% (photo calibration: 1.8-2.5% and 3.2-4.6%). Tuned
for 0.1% they measured 0.07-0.21%: up to 2x the target, on 5-14 alerting strangers of ~6,000, so
counting noise is of the same size. Persons with more than 5 photos use the K=5 curve, which
under-states their per-comparison FMR by up to 1.2x (dlib) and 1.7x (fusion model), measured for 6-10
photos (the mixed list above includes 87 such persons and still met the target on average).
In-sample: the calibrations were built on the same LFW dev photos.

A list that grows keeps its threshold: tune again after enrolling (``watchlist tune`` prints the list
size the threshold was chosen for).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sightline.gallery.service import Gallery
    from sightline.vision.calibration import FusedCalibrations

logger = logging.getLogger(__name__)

METHOD = "independence: FPIR = 1 - (1 - FMR)^N on the model's impostor calibration"
METHOD_FUSED = (
    "independence over fused templates: FPIR = 1 - prod_p (1 - FMR_K_p) on the model's fused-template "
    "calibrations (K_p = each person's photos), solved by bisection"
)
TemplateMode = Literal["per-photo", "fused"]
TEMPLATE_MODES: tuple[TemplateMode, ...] = ("per-photo", "fused")


class TuningError(ValueError):
    """The target cannot be met or measured (message says why and what would work)."""


@dataclass(frozen=True)
class TuneResult:
    """A threshold chosen for one watchlist.

    list_size: persons the threshold was chosen for; max_false_alerts_per_1000: the target (strangers
    in 1,000 raising an alert); fmr_per_comparison: the per-comparison rate that target implies;
    threshold: cosine similarity (alert when >= it); previous_threshold: the list's stored threshold
    before (None: the model default); est_fpir: the calibration's estimate at ``threshold``; stored:
    whether the threshold was written to the gallery (False for a dry run); templates: "per-photo"
    (a stranger is compared with every photo: ``comparisons`` = photos) or "fused" (one comparison per
    person: ``comparisons`` = persons); photos_per_person: for "fused", photos per person -> persons
    planned for (None for per-photo).
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
    templates: TemplateMode = "per-photo"
    photos_per_person: dict[int, int] | None = None


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


def check_templates(templates: str) -> TemplateMode:
    """``templates`` as a TemplateMode; raises TuningError naming the valid ones."""
    if templates not in TEMPLATE_MODES:
        raise TuningError(f"templates must be one of {', '.join(TEMPLATE_MODES)}, got {templates!r}")
    return templates  # type: ignore[return-value]


def fused_calibrations(gallery: Gallery) -> FusedCalibrations:
    """The shipped fused-template calibrations of the gallery engine's model (and its photo one).
    Raises TuningError when none is shipped for the model."""
    from sightline.vision.calibration import FusedCalibrations

    try:
        return FusedCalibrations.builtin(str(gallery.engine.model), gallery.engine.calibration)
    except (FileNotFoundError, ValueError) as exc:
        raise TuningError(str(exc)) from None


def choose_fused_threshold(
    fused: FusedCalibrations, max_false_alerts_per_1000: float, photos_per_person: Mapping[int, int]
) -> tuple[float, float]:
    """(threshold, mean per-person FMR at it) for at most ``max_false_alerts_per_1000`` strangers in
    1,000 alerting on a FUSED list whose persons have the photo counts ``photos_per_person`` (photos
    -> persons). Raises TuningError when the target is out of range or not resolvable."""
    f = float(max_false_alerts_per_1000)
    if not 0.0 < f < 1000.0:
        raise TuningError(f"max false alerts per 1000 must be in (0, 1000), got {max_false_alerts_per_1000}")
    try:
        thr = fused.threshold_for_fpir(f / 1000.0, photos_per_person)
    except ValueError as exc:
        raise TuningError(str(exc)) from None
    return thr, mean_fmr(fused, thr, photos_per_person)


def mean_fmr(fused: FusedCalibrations, similarity: float, photos_per_person: Mapping[int, int]) -> float:
    """Mean over the list's persons of the chance a stranger scores ``similarity`` or more against
    that person's fused template (each person's K_p curve)."""
    n = sum(int(v) for v in photos_per_person.values())
    if n < 1:
        raise TuningError("the list has no persons to describe")
    return float(sum(int(c) * fused.est_fmr(similarity, int(k)) for k, c in photos_per_person.items()) / n)


def plan_photo_counts(photos_per_person: Mapping[int, int], persons: int) -> dict[int, int]:
    """``photos_per_person`` (photos -> persons) scaled to ``persons`` persons with the same mix of
    photo counts (largest remainders; {1: persons} when the mix is empty)."""
    n = int(persons)
    if n < 1:
        raise TuningError(f"list size must be >= 1 person, got {persons}")
    mix = {int(k): int(c) for k, c in photos_per_person.items() if int(c) > 0}
    total = sum(mix.values())
    if not total:
        return {1: n}
    exact = {k: c * n / total for k, c in mix.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: n - sum(out.values())]:
        out[k] += 1
    return {k: c for k, c in sorted(out.items()) if c}


def list_photo_counts(gallery: Gallery, watchlist: str | None) -> dict[int, int]:
    """Photos per person -> persons, over the templates of the engine's model of the members of
    ``watchlist`` (None: the whole gallery); persons without a template of the model are not
    counted (they cannot match). Counted in SQL (no descriptor is read). Raises
    ``UnknownWatchlistError`` for a missing list."""
    model = str(gallery.engine.model)
    if watchlist is None:
        sql = "SELECT count(*) FROM templates WHERE model = ? GROUP BY person_id"
        params: tuple[object, ...] = (model,)
    else:
        name = gallery.get_watchlist(watchlist).name
        sql = (
            "SELECT count(*) FROM templates t JOIN watchlist_members m ON m.person_id = t.person_id "
            "JOIN watchlists w ON w.id = m.watchlist_id WHERE t.model = ? AND w.name = ? GROUP BY t.person_id"
        )
        params = (model, name)
    with gallery.store.transaction(write=False) as conn:
        rows = conn.execute(sql, params).fetchall()
    out: dict[int, int] = {}
    for (k,) in rows:
        out[int(k)] = out.get(int(k), 0) + 1
    return dict(sorted(out.items()))


def tune_watchlist(
    gallery: Gallery,
    name: str,
    max_false_alerts_per_1000: float,
    *,
    list_size: int | None = None,
    dry_run: bool = False,
    templates: TemplateMode = "per-photo",
) -> TuneResult:
    """Choose and (unless ``dry_run``) store the threshold of watchlist ``name``.

    list_size: plan for this many persons (default: the list's current member count; an empty list
    needs it), each with as many photos as the list's members have on average (1 when empty);
    with ``templates="fused"`` the list's mix of photo counts per person is scaled to it instead.
    templates: how the live matcher scores the list (``WatchConfig.templates``): "per-photo" (every
    photo compared, the photo calibration) or "fused" (one mean template per person, the
    fused-template calibrations, stricter for the same target).
    Raises ``UnknownWatchlistError`` for a missing list, TuningError for a target that cannot be met
    or a model without fused calibrations.
    """
    mode = check_templates(templates)
    wl = gallery.get_watchlist(name)
    persons, n_templates = list_counts(gallery, wl.name)
    n = persons if list_size is None else int(list_size)
    if n < 1:
        raise TuningError(
            f"watchlist {wl.name!r} has no members: enroll people first, or give the list size to plan for"
        )
    cal = gallery.engine.calibration
    mix: dict[int, int] | None = None
    if mode == "fused":
        fused = fused_calibrations(gallery)
        mix = plan_photo_counts(list_photo_counts(gallery, wl.name), n)
        comparisons = n
        thr, fmr = choose_fused_threshold(fused, max_false_alerts_per_1000, mix)
        est = fused.est_fpir(thr, mix)
    else:
        per_person = n_templates / persons if persons else 1.0
        comparisons = max(n, math.ceil(n * per_person - 1e-9))
        thr, fmr = choose_threshold(cal, max_false_alerts_per_1000, comparisons)
        est = float(cal.est_fpir(thr, comparisons))  # type: ignore[attr-defined]
    if not dry_run:
        gallery.store.update_watchlist(wl.id, description=wl.description, threshold=thr, threshold_templates=mode)
    logger.info(
        "watchlist %s: threshold %.4f for <= %s false alerts per 1000 strangers at %d persons, %s templates "
        "(FMR %.3g)%s",
        wl.name,
        thr,
        max_false_alerts_per_1000,
        n,
        mode,
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
        est_fpir=float(est),
        method=METHOD_FUSED if mode == "fused" else METHOD,
        stored=not dry_run,
        templates=mode,
        photos_per_person=mix,
    )


@dataclass(frozen=True)
class ScoreMeaning:
    """What one similarity means against one list (for the CLI and the console).

    est_fmr: chance a stranger scores this high against ONE template (fused lists: the mean over the
    list's persons); est_fpir: against SOME template of the list (the false-alert chance that matters
    for this list); list_size: the comparisons per search (templates: photos per-photo, persons
    fused); templates: the matching mode described; text: one line.
    """

    similarity: float
    list_size: int
    est_fmr: float
    est_fpir: float
    text: str
    templates: TemplateMode = "per-photo"


def list_counts(gallery: Gallery, watchlist: str | None) -> tuple[int, int]:
    """(persons, templates of the engine's model) a search of ``watchlist`` (None: the whole gallery)
    compares against. Raises ``UnknownWatchlistError`` for a missing list."""
    name = None if watchlist is None else gallery.get_watchlist(watchlist).name
    return gallery.store.template_counts(gallery.engine.model, name)


def score_meaning(
    calibration: object,
    similarity: float,
    size: int,
    *,
    templates: TemplateMode = "per-photo",
    photos_per_person: Mapping[int, int] | None = None,
) -> ScoreMeaning:
    """The list-size aware meaning of ``similarity``.

    per-photo (default): ``calibration`` a ``Calibration``, ``size`` the comparisons per search, i.e.
    the templates of the list (``list_counts(...)[1]``); see ``Calibration.est_fpir``.
    fused: ``calibration`` a ``FusedCalibrations`` (or the model's ``Calibration``, whose shipped fused
    calibrations are then loaded), ``photos_per_person`` the list's photos per person -> persons
    (``list_photo_counts``; ``size`` is then ignored). Raises TuningError for a fused meaning without
    photo counts or fused calibrations.
    """
    mode = check_templates(templates)
    if mode == "fused":
        from sightline.vision.calibration import FusedCalibrations

        if isinstance(calibration, FusedCalibrations):
            fused = calibration
        else:
            try:
                fused = FusedCalibrations.builtin(str(calibration.model), calibration)  # type: ignore[attr-defined,arg-type]
            except (FileNotFoundError, ValueError) as exc:
                raise TuningError(str(exc)) from None
        mix = {int(k): int(v) for k, v in (photos_per_person or {}).items() if int(v) > 0}
        if not mix:
            raise TuningError("a fused list's meaning needs its photos per person (list_photo_counts)")
        return ScoreMeaning(
            similarity=float(similarity),
            list_size=sum(mix.values()),
            est_fmr=mean_fmr(fused, similarity, mix),
            est_fpir=float(fused.est_fpir(similarity, mix)),
            text=fused.describe_for_list(similarity, mix),
            templates="fused",
        )
    n = max(1, int(size))
    return ScoreMeaning(
        similarity=float(similarity),
        list_size=n,
        est_fmr=float(calibration.est_fmr(similarity)),  # type: ignore[attr-defined]
        est_fpir=float(calibration.est_fpir(similarity, n)),  # type: ignore[attr-defined]
        text=str(calibration.describe_for_list(similarity, n)),  # type: ignore[attr-defined]
    )
