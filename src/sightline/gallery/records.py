"""Frozen records the gallery hands out: persons, templates, watchlists, enrolment and search results.

Times are timezone-aware UTC ``datetime`` values (stored as unix seconds in SQLite). Similarities are
cosine similarities of L2-normalised descriptors, higher is closer, in [-1, 1].
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from sightline.types import F32, Candidate, FaceRecord


class GalleryError(ValueError):
    """A gallery request that cannot be carried out; the message says why and what to do."""


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` (already stripped) cannot name a ``what`` ("a person", "a watchlist", "a token"), or
    None when it can: empty, or holding a control character (NUL, newline, escape...). SQLite's
    ``length()`` stops at a NUL, so such a name would also break the tables' non-empty CHECKs, and control
    characters garble the console, logs and notifications that show names."""
    if not name:
        return f"{what} needs a non-empty name"
    bad = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"{what} name must not contain control characters (found U+{ord(bad):04X})"
    return None


class SchemaVersionError(GalleryError):
    """The gallery file was written by a newer Sightline than this one (or is not a gallery)."""


class UnknownWatchlistError(GalleryError, LookupError):
    """A watchlist name that does not exist; the message lists the existing ones."""


class UnknownPersonError(GalleryError, LookupError):
    """A person id or name that does not exist."""


class AmbiguousPersonError(GalleryError, LookupError):
    """A name shared by several persons where one was meant; the message lists their ids."""


class PhotoConflictError(GalleryError):
    """A photo (by its sha256) is already enrolled as a different person."""


class NoFaceError(GalleryError):
    """A photo in which the engine found no face where one was required."""


@dataclass(frozen=True)
class Person:
    """One enrolled identity.

    external_id: an optional id from another system (badge number, case id); unique when set.
    """

    id: int
    name: str
    external_id: str | None
    notes: str | None
    created_at: datetime


@dataclass(frozen=True)
class PersonInfo:
    """A person with what the gallery holds about them (the fields of ``Person``, plus counts).

    template_count: templates of every model (not only the engine's current one).
    watchlists:     names of the watchlists the person belongs to, sorted.
    """

    id: int
    name: str
    external_id: str | None
    notes: str | None
    created_at: datetime
    template_count: int
    watchlists: tuple[str, ...]

    @property
    def person(self) -> Person:
        return Person(self.id, self.name, self.external_id, self.notes, self.created_at)


@dataclass(frozen=True, eq=False)
class Template:
    """One face descriptor of a person, with where it came from.

    model:        the descriptor model that produced it (e.g. "dlib_resnet_v1"); templates of different
                  models are never compared.
    dim:          descriptor length D.
    quality:      the engine's face quality score in [0, 1] at enrolment.
    photo_sha256: hex sha256 of the source photo's bytes (duplicate detection).
    source_name:  the photo's file name (or caller-given name), for people, not for identity.
    xyxy:         the face box in the source photo, pixels (None when not recorded).
    descriptor:   (D,) float32, L2-normalised; None when listed without descriptors.
    """

    id: int
    person_id: int
    model: str
    dim: int
    quality: float
    photo_sha256: str
    source_name: str | None
    xyxy: tuple[float, float, float, float] | None
    created_at: datetime
    descriptor: F32 | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Watchlist:
    """A named group of persons searched together.

    threshold:    cosine-similarity threshold for a match; None means the model's default threshold.
    member_count: persons in the watchlist when it was read.
    threshold_templates: the template mode the threshold was tuned for ('per-photo' or 'fused',
                  ``watchlist tune --templates``); None when set by hand or when there is none.
    """

    id: int
    name: str
    description: str
    threshold: float | None
    created_at: datetime
    member_count: int = 0
    threshold_templates: str | None = None


@dataclass(frozen=True)
class SkippedPhoto:
    """A photo that was not enrolled.

    code: machine-readable reason: an ``ImageError`` code for undecodable photos, or one of
          ``no_face``, ``multiple_faces``, ``duplicate``, ``photo_conflict``, ``no_embedding``.
    """

    person: str
    name: str
    reason: str
    code: str


@dataclass(frozen=True)
class EnrollResult:
    """What happened to one person's enrolment.

    person_id:    the person written to (None when no photo was accepted and no such person existed).
    created:      True when this enrolment created the person.
    template_ids: templates added, in photo order.
    """

    name: str
    person_id: int | None
    created: bool
    template_ids: tuple[int, ...]
    skipped: tuple[SkippedPhoto, ...] = ()

    @property
    def enrolled(self) -> bool:
        """True when at least one template was added."""
        return bool(self.template_ids)


@dataclass(frozen=True)
class EnrollReport:
    """The outcome of an enrolment of one or many persons (one ``EnrollResult`` each)."""

    results: tuple[EnrollResult, ...] = ()

    @property
    def persons_enrolled(self) -> int:
        """Persons that received at least one new template (created or extended)."""
        return sum(1 for r in self.results if r.enrolled)

    @property
    def persons_created(self) -> int:
        return sum(1 for r in self.results if r.created)

    @property
    def templates_added(self) -> int:
        return sum(len(r.template_ids) for r in self.results)

    @property
    def skipped(self) -> tuple[SkippedPhoto, ...]:
        return tuple(s for r in self.results for s in r.skipped)

    @property
    def not_enrolled(self) -> tuple[str, ...]:
        """Names of persons for whom no photo was accepted (a new person is then not created)."""
        return tuple(r.name for r in self.results if not r.enrolled)

    def __add__(self, other: EnrollReport) -> EnrollReport:
        return EnrollReport(self.results + other.results)


@dataclass(frozen=True)
class SearchHit:
    """One index hit: a person's best template for a query."""

    person_id: int
    template_id: int
    similarity: float


@dataclass(frozen=True)
class FaceSearchResult:
    """One face of a probe photo and its gallery candidates, best first.

    face:       the engine's record (box, landmarks, quality, descriptor).
    candidates: up to top_k persons, similarity descending; ``is_match`` against ``threshold``.
    watchlist:  the watchlist searched, None for the whole gallery.
    threshold:  the threshold applied (the watchlist's, else the model default).
    """

    face: FaceRecord
    candidates: tuple[Candidate, ...]
    watchlist: str | None
    threshold: float

    @property
    def best_match(self) -> Candidate | None:
        """The top candidate when it clears the threshold, else None."""
        if self.candidates and self.candidates[0].is_match:
            return self.candidates[0]
        return None


@dataclass(frozen=True)
class VerifyResult:
    """One-to-one comparison of the largest face of two photos.

    similarity:   cosine similarity of the two descriptors.
    threshold:    the model's default threshold.
    same_person:  similarity >= threshold.
    est_fmr:      estimated false-match rate at this similarity.
    """

    similarity: float
    threshold: float
    same_person: bool
    est_fmr: float
    face_a: FaceRecord | None = field(default=None, repr=False, compare=False)
    face_b: FaceRecord | None = field(default=None, repr=False, compare=False)
