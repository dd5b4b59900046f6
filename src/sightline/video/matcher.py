"""Match live-video descriptors against every active watchlist at once.

    matcher = WatchlistMatcher(gallery)                 # all watchlists; or watchlists=["wanted"]
    matches = matcher.match(embeddings)                 # (N, D) -> N x (Match | None)

The matcher keeps its own matrix of the templates of every person on an active watchlist (a
watchlist is active when it exists and, if ``watchlists`` is given, is named there; the schema has
no on/off flag), so one frame batch costs ONE matrix multiply ``(N, D) @ (D, M)`` whatever the
number of watchlists, followed by a per-person maximum over their templates. Each (person,
watchlist) pair then has the watchlist's threshold (None -> the engine's calibrated default).

A descriptor matches when some pair is at or above its threshold. The Match is the person with the
highest similarity among the pairs that pass; when that person passes on several watchlists, the
one with the highest threshold is reported (the strictest list they meet), ties by name.

Refresh: before each match the gallery's two change counters (templates, watchlists and
memberships, both bumped by triggers in any process) are read — one cheap query each — and the
matrix is rebuilt when either moved. Memory: M * D * 4 bytes for the watchlisted templates only.
A person renamed without a template or membership change keeps the old name until the next reload.
Thread-safe: one matcher may serve every camera worker of a process.

Templates (``templates``): ``"per-photo"`` (default) scores a person by their best template;
``"fused"`` replaces a person's templates by one, the mean of their L2-normalised descriptors,
renormalised. With 2 photos per person fused missed fewer listed people on LFW (FNIR at FPIR 1%:
11.4% vs 17.1%, mean of 5 splits; docs/BENCHMARKS.md §6). Not to be confused with the "fusion" model.
Fused templates score strangers higher than single photos (the photo calibration under-stated a fused
list's false alerts 1.3-1.8x for dlib, 2-4x for the fusion model), so in "fused" mode everything that
reads the calibration uses the fused-template calibrations (``FusedCalibrations``, one impostor curve
per K = 2..5 photos; a person with one photo keeps the photo calibration, one with more than 5 the K=5
curve): a list without its own threshold gets, per person, the threshold at the model's default FMR
(1e-3) on that person's K curve, and ``Match.est_fmr`` is read from it. A list's tuned threshold should
come from ``sightline watchlist tune NAME --templates fused`` (set ``WatchConfig.templates`` to match).
Construction raises ValueError when the model has no fused calibrations.

Quality gate (``min_alert_quality``, ``WatchConfig.min_alert_quality``): when ``match`` is given the
quality score of each face (``Quality.score``, 0-1), a face below the gate gets no Match whatever its
similarity, so it can never raise an alert; ``gated`` counts those. On the test clips most stranger
alerts came from small or blurred faces, so this trades a few late or missed alerts for fewer false
ones (benchmarks/quality_gate.py, docs/BENCHMARKS.md §6). A track keeps
offering better shots, so a listed person who turns to the camera still matches then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from sightline.types import F32, Match

if TYPE_CHECKING:
    from sightline.gallery.service import Gallery
    from sightline.gallery.tuning import ScoreMeaning
    from sightline.vision.calibration import FusedCalibrations

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Everything match() needs, rebuilt on a gallery change (internal)."""

    generation: tuple[int, int]
    matrix: F32  # (M, D) templates of watchlisted persons, rows grouped by person
    starts: I64  # (P,) first row of each person in ``matrix``
    persons: I64  # (P,) person ids
    photos: I64  # (P,) templates (photos) of each person, before any fusing
    names: dict[int, str]
    pair_col: I64  # (K,) column in the (Q, P) per-person maximum of each (person, watchlist) pair
    pair_thr: npt.NDArray[np.float64]  # (K,) the pair's threshold
    pair_wl: tuple[str, ...]  # (K,) the pair's watchlist name
    watchlists: tuple[str, ...]


class WatchlistMatcher:
    """Best watchlist match per descriptor over all active watchlists.

    gallery:    the gallery (its store for templates and watchlists, its engine for the model name
                and the calibration: default threshold and estimated false-match rates).
    watchlists: names of the watchlists to match (None: every watchlist in the gallery). Names that
                do not exist (yet) are ignored; they become active when created.
    """

    def __init__(
        self,
        gallery: Gallery,
        watchlists: Collection[str] | None = None,
        *,
        min_alert_quality: float = 0.0,
        templates: Literal["per-photo", "fused"] = "per-photo",
    ) -> None:
        if not 0.0 <= float(min_alert_quality) <= 1.0:
            raise ValueError(f"min_alert_quality must be a quality score in [0, 1], got {min_alert_quality}")
        if templates not in ("per-photo", "fused"):
            raise ValueError(f"templates must be 'per-photo' or 'fused', got {templates!r}")
        self.templates = templates
        self.gallery = gallery
        self.fused: FusedCalibrations | None = None
        if templates == "fused":
            from sightline.vision.calibration import FusedCalibrations

            try:
                self.fused = FusedCalibrations.builtin(str(gallery.engine.model), gallery.engine.calibration)
            except FileNotFoundError as exc:
                raise ValueError(f"templates='fused' needs fused-template calibrations: {exc}") from None
        self.only = None if watchlists is None else frozenset(n.strip().casefold() for n in watchlists)
        self.min_alert_quality = float(min_alert_quality)
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None
        self.reloads = 0
        self.gated = 0

    @property
    def dim(self) -> int:
        return int(self.gallery.engine.dim)

    def size(self) -> tuple[int, int]:
        """(persons, templates) currently matched against (after a refresh)."""
        snap = self._current()
        return len(snap.persons), len(snap.matrix)

    def watchlists(self) -> tuple[str, ...]:
        """Names of the active watchlists (after a refresh)."""
        return self._current().watchlists

    def photo_counts(self) -> dict[int, int]:
        """Photos per person -> persons, over the persons currently matched against (after a refresh)."""
        ks, counts = np.unique(self._current().photos, return_counts=True)
        return {int(k): int(c) for k, c in zip(ks, counts, strict=True)}

    def score_meaning(self, similarity: float) -> ScoreMeaning:
        """What ``similarity`` means against everything this matcher compares a face with: the chance
        a stranger scores this high against SOME template (``sightline.gallery.tuning.score_meaning``),
        with the calibration of the template mode: per-photo (N = templates) or fused (one template
        per person, each person's K curve)."""
        from sightline.gallery.tuning import score_meaning

        if self.fused is not None:
            mix = self.photo_counts() or {1: 1}
            return score_meaning(self.fused, similarity, 0, templates="fused", photos_per_person=mix)
        return score_meaning(self.gallery.engine.calibration, similarity, max(1, self.size()[1]))

    def refresh(self) -> None:
        """Rebuild now (``match`` does this by itself when the gallery changed)."""
        with self._lock:
            self._snap = self._load()

    def match(self, embeddings: npt.ArrayLike, qualities: npt.ArrayLike | None = None) -> list[Match | None]:
        """One Match (or None) per row of ``embeddings``: (N, D) float32, L2-normalised, of the
        gallery engine's model. One matrix multiply for the whole batch.

        qualities: (N,) quality score of each face (0-1); rows below ``min_alert_quality`` get None
        (counted in ``gated``). None: no gate (every row is matched).
        """
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or (len(q) and q.shape[1] != self.dim):
            raise ValueError(f"embeddings must have shape (N, {self.dim}), got {q.shape}")
        ok = np.ones(len(q), bool)
        if qualities is not None:
            qs = np.asarray(qualities, dtype=np.float64).reshape(-1)
            if qs.shape != (len(q),):
                raise ValueError(f"qualities must have shape ({len(q)},), one per embedding, got {qs.shape}")
            ok = qs >= self.min_alert_quality  # NaN quality: gated
            n_gated = int((~ok).sum())
            if n_gated:
                with self._lock:
                    self.gated += n_gated
        if len(q) == 0:
            return []
        snap = self._current()
        if len(snap.pair_col) == 0:
            return [None] * len(q)
        sims = q @ snap.matrix.T  # (N, M): the one multiply
        best = np.maximum.reduceat(sims, snap.starts, axis=1)  # (N, P) each person's best template
        pair_sim = best[:, snap.pair_col]  # (N, K)
        passed = (pair_sim >= snap.pair_thr[None, :]) & ok[:, None]
        cal = self.gallery.engine.calibration
        fused = self.fused
        out: list[Match | None] = []
        for i in range(len(q)):
            ks = np.flatnonzero(passed[i])
            if len(ks) == 0:
                out.append(None)
                continue
            k = min(ks, key=lambda j: (-pair_sim[i, j], -snap.pair_thr[j], snap.pair_wl[j]))
            col = int(snap.pair_col[k])
            pid = int(snap.persons[col])
            sim = float(pair_sim[i, k])
            fmr = cal.est_fmr(sim) if fused is None else fused.est_fmr(sim, int(snap.photos[col]))
            out.append(
                Match(
                    person_id=pid,
                    name=snap.names.get(pid, f"person {pid}"),
                    watchlist=snap.pair_wl[k],
                    similarity=sim,
                    threshold=float(snap.pair_thr[k]),
                    est_fmr=float(fmr),
                )
            )
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _current(self) -> _Snapshot:
        store = self.gallery.store
        gen = (store.generation(), store.watchlists_generation())
        snap = self._snap
        if snap is not None and snap.generation == gen:
            return snap
        with self._lock:
            if self._snap is None or self._snap.generation != gen:
                self._snap = self._load()
            return self._snap

    def _load(self) -> _Snapshot:
        store = self.gallery.store
        engine = self.gallery.engine
        default_thr = float(engine.calibration.default_threshold)
        with store.transaction(write=False):  # one consistent snapshot of templates and watchlists
            gen = (store.generation(), store.watchlists_generation())
            lists = [w for w in store.list_watchlists() if self.only is None or w.name.casefold() in self.only]
            members = {w.name: store.member_ids(w.id) for w in lists}
            wanted = set().union(*members.values()) if members else set()
            _, pids, mat = store.load_descriptors(engine.model) if wanted else (None, None, None)
            names = {p.id: p.name for p in store.persons_by_id(wanted).values()}
        dim = int(engine.dim)
        if pids is None or mat is None or len(pids) == 0:
            matrix, row_pids = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
        else:
            if mat.shape[1] != dim:
                raise ValueError(
                    f"gallery templates of model {engine.model!r} have {mat.shape[1]} dimensions, engine gives {dim}"
                )
            keep = np.isin(pids, np.fromiter(wanted, np.int64, len(wanted)))
            matrix, row_pids = np.ascontiguousarray(mat[keep]), pids[keep]  # already sorted by person
        starts = np.flatnonzero(np.r_[True, row_pids[1:] != row_pids[:-1]]) if len(row_pids) else np.zeros(0, np.int64)
        persons = row_pids[starts] if len(row_pids) else np.zeros(0, np.int64)
        photos = np.diff(np.r_[starts, len(row_pids)]).astype(np.int64) if len(row_pids) else np.zeros(0, np.int64)
        if self.templates == "fused" and len(persons):
            sums = np.add.reduceat(matrix.astype(np.float64), starts, axis=0)  # rows are unit vectors
            matrix = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
            starts = np.arange(len(persons), dtype=np.int64)
        col_of = {int(p): c for c, p in enumerate(persons)}
        pair_col, pair_thr, pair_wl = [], [], []
        # fused: a list without its own threshold uses, per person, the default FMR on that person's K curve
        fused_default = (
            {int(k): float(self.fused.for_k(int(k)).default_threshold) for k in np.unique(photos)}
            if self.fused is not None
            else {}
        )
        for w in lists:
            tuned = getattr(w, "threshold_templates", None)
            if w.threshold is not None and tuned is not None and tuned != self.templates:
                logger.warning(
                    "watchlist %s: its threshold %.4f was tuned for %s templates but is matched with %s templates "
                    "(WatchConfig.templates): its false-alert rate is not the one it was tuned for; tune it again "
                    "with `sightline watchlist tune %s --templates %s`",
                    w.name,
                    w.threshold,
                    tuned,
                    self.templates,
                    w.name,
                    self.templates,
                )
            thr = default_thr if w.threshold is None else float(w.threshold)
            for pid in sorted(members[w.name]):
                if pid in col_of:  # a member without a template of this model cannot match
                    col = col_of[pid]
                    pair_col.append(col)
                    pair_thr.append(fused_default.get(int(photos[col]), thr) if w.threshold is None else thr)
                    pair_wl.append(w.name)
        self.reloads += 1
        logger.info(
            "watchlist matcher: %s watchlist(s), %s person(s), %s template(s), %s (generation %s)",
            len(lists),
            len(persons),
            len(matrix),
            self.templates,
            gen,
        )
        return _Snapshot(
            generation=gen,
            matrix=matrix,
            starts=starts.astype(np.int64),
            persons=persons.astype(np.int64),
            photos=photos,
            names=names,
            pair_col=np.asarray(pair_col, np.int64),
            pair_thr=np.asarray(pair_thr, np.float64),
            pair_wl=tuple(pair_wl),
            watchlists=tuple(w.name for w in lists),
        )
