"""The gallery's use-cases: enrol persons from photos, search and verify faces, manage watchlists.

``Gallery`` joins the store (SQLite, the truth), the vector index (memory, a cache of the
templates of the engine's model) and the face engine (stateless). Every write goes to the store
first, in one transaction, and is then applied to the index; before each search the store's
template change counter is compared with the one the index reflects, and the index is reloaded
when another process (or a raw SQL purge) changed the templates.

    gallery = Gallery.open(settings.data_dir, FaceEngine.from_config(settings.engine))
    report = gallery.enroll_folder(Path("people"), watchlist="staff", create=True)
    for face in gallery.search(load_image("door.jpg"), watchlist="staff"):
        print(face.best_match)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

from sightline.config import ImagingConfig
from sightline.gallery.index import VectorIndex
from sightline.gallery.records import (
    AmbiguousPersonError,
    EnrollReport,
    EnrollResult,
    FaceSearchResult,
    GalleryError,
    NoFaceError,
    Person,
    PersonInfo,
    PhotoConflictError,
    SkippedPhoto,
    UnknownPersonError,
    UnknownWatchlistError,
    VerifyResult,
    Watchlist,
)
from sightline.gallery.store import GalleryStore
from sightline.imaging import encode_crop
from sightline.types import Candidate, FaceRecord, Image

if TYPE_CHECKING:
    from sightline.imaging import LoadedImage

logger = logging.getLogger(__name__)

MultiFace = Literal["skip", "largest"]
Progress = Callable[[int, int], None]


class CalibrationLike(Protocol):
    @property
    def default_threshold(self) -> float: ...

    def est_fmr(self, similarity: float) -> float: ...


class EngineLike(Protocol):
    """What the gallery needs from ``sightline.vision.engine.FaceEngine``."""

    @property
    def model(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def calibration(self) -> CalibrationLike: ...

    def analyze(self, image: Image, *, embed: bool = True, subject: bool = False) -> list[FaceRecord]: ...


class Gallery:
    """Persons, their templates and watchlists, searchable with one face engine.

    Thread-safe for one process: the store keeps a connection per thread, the index has its own
    lock and calls into the engine (which is not thread-safe) are serialised here. Several
    processes may share one gallery file; each sees the others' changes at its next search.
    """

    def __init__(self, store: GalleryStore, engine: EngineLike, imaging: ImagingConfig = ImagingConfig()) -> None:
        if engine.dim <= 0:
            raise ValueError(f"engine.dim must be > 0, got {engine.dim}")
        self.store = store
        self.engine = engine
        self.imaging = imaging
        self._index = VectorIndex(engine.dim)
        self._index_gen: int | None = None  # store generation the index reflects; None = load it
        self._sync_lock = threading.Lock()
        self._engine_lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, engine: EngineLike, imaging: ImagingConfig = ImagingConfig()) -> Gallery:
        """The gallery file in ``data_dir`` (created, with the folder, when missing)."""
        return cls(GalleryStore.open(Path(data_dir)), engine, imaging)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- enrolment ---------------------------------------------------------------------------------

    def enroll_person(
        self,
        name: str,
        photos: Sequence[Path | str | LoadedImage],
        *,
        watchlist: str | None,
        external_id: str | None = None,
        notes: str | None = None,
        multi_face: MultiFace = "skip",
        create: bool = False,
        progress: Progress | None = None,
    ) -> EnrollReport:
        """Enrol one person from photos; one template per accepted photo.

        Each photo is decoded (undecodable -> skipped with the decoder's reason), analysed (no face
        -> skipped; several faces -> skipped unless ``multi_face="largest"``, which takes the largest)
        and checked against the photos already enrolled by sha256 (same person -> skipped as
        ``duplicate``; another person -> ``PhotoConflictError`` and nothing is written).

        The person, every accepted template and the watchlist membership are written in one
        transaction: a failure leaves nothing half-enrolled, and when no photo is accepted no
        person is created (the report lists the reasons). A person with the same name (and the same
        external id, when given) gets the new templates instead of a second person being created.

        watchlist: add the person to it (None: the gallery only). An unknown name raises
                   ``UnknownWatchlistError`` listing the existing ones, unless ``create=True``.
        progress:  called as ``progress(done, total)`` after each photo.
        """
        name = name.strip()
        if not name:
            raise GalleryError("a person needs a non-empty name")
        if multi_face not in ("skip", "largest"):
            raise ValueError(f"multi_face must be 'skip' or 'largest', got {multi_face!r}")
        if watchlist is not None and not create:
            self.get_watchlist(watchlist)  # fail before any photo is analysed
        existing = self._existing_person(name, external_id)
        owner_id = existing.id if existing else None

        accepted: list[tuple[FaceRecord, str, str, bytes]] = []  # (face, sha256, photo name, crop JPEG)
        skipped: list[SkippedPhoto] = []
        seen: set[str] = set()
        total = len(photos)
        for done, photo in enumerate(photos, 1):
            outcome = self._prepare_photo(name, photo, owner_id, seen, multi_face)
            if isinstance(outcome, SkippedPhoto):
                skipped.append(outcome)
                logger.info("enroll %s: skipped %s: %s", name, outcome.name, outcome.reason)
            else:
                accepted.append(outcome)
            if progress is not None:
                progress(done, total)

        if not accepted:
            if owner_id is not None and watchlist is not None:  # e.g. re-enrolling the same photos into a list
                with self.store.transaction():
                    wl = self.store.get_watchlist(watchlist) or self.store.create_watchlist(watchlist)
                    self.store.add_member(wl.id, owner_id)
            logger.info("enroll %s: no photo accepted, no template written", name)
            return EnrollReport((EnrollResult(name, owner_id, False, (), tuple(skipped)),))

        vecs = np.stack([f.embedding for f, _, _, _ in accepted]).astype(np.float32)
        try:
            with self.store.transaction():
                before = self.store.generation()
                person = self.store.get_person(owner_id) if owner_id is not None else None
                created = person is None
                if person is None:  # new, or deleted by someone else since we looked
                    person = self.store.add_person(name, external_id=external_id, notes=notes)
                elif notes is not None:
                    self.store.update_person(person.id, notes=notes)
                if watchlist is not None:
                    wl = self.store.get_watchlist(watchlist) or self.store.create_watchlist(watchlist)
                    self.store.add_member(wl.id, person.id)
                tids = [
                    self.store.add_template(
                        person.id,
                        model=self.engine.model,
                        descriptor=face.embedding,  # type: ignore[arg-type]
                        quality=face.quality.score,
                        photo_sha256=sha,
                        source_name=photo_name,
                        xyxy=face.xyxy,
                        crop_jpeg=crop,
                    )
                    for face, sha, photo_name, crop in accepted
                ]
                after = self.store.generation()
        except sqlite3.IntegrityError as e:
            if "photo_sha256" in str(e):  # another process enrolled one of these photos meanwhile
                raise PhotoConflictError(
                    f"enrolling {name!r}: one of the photos was enrolled by another process meanwhile; "
                    "nothing was written, retry to see which"
                ) from e
            raise
        pid = person.id
        self._apply(before, after, lambda idx: idx.add(tids, [pid] * len(tids), vecs))
        logger.info(
            "enroll %s (person %s%s): %s template(s) added, %s photo(s) skipped",
            name,
            pid,
            ", new" if created else "",
            len(tids),
            len(skipped),
        )
        return EnrollReport((EnrollResult(name, pid, created, tuple(tids), tuple(skipped)),))

    def enroll_folder(
        self,
        root: Path,
        *,
        watchlist: str | None,
        multi_face: MultiFace = "skip",
        create: bool = False,
        progress: Progress | None = None,
    ) -> EnrollReport:
        """Enrol ``ROOT/PERSON_NAME/*`` photos: each subfolder is one person, named after it.

        Persons are enrolled one transaction each (a crash keeps the persons already done).
        A person refused as a whole (a photo already enrolled as someone else, or a name shared by
        several persons) is reported in ``skipped`` with every one of their photos, and the others
        go on. Photos directly in ``root`` are skipped with the reason.
        progress: ``progress(done, total)`` over all photos.
        """
        from sightline.imaging import IMAGE_SUFFIXES, find_photos

        root = Path(root)
        if not root.is_dir():
            raise GalleryError(f"{root} is not a folder")
        if watchlist is not None and not create:
            self.get_watchlist(watchlist)
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        plan = [(d.name, find_photos([d])) for d in subdirs]
        total = sum(len(photos) for _, photos in plan)
        offset = 0
        results: list[EnrollResult] = []
        if loose:
            results.append(
                EnrollResult(
                    root.name,
                    None,
                    False,
                    (),
                    tuple(
                        SkippedPhoto(
                            root.name,
                            p.name,
                            "photo directly in the root folder; put it in a PERSON_NAME/ subfolder",
                            "not_in_person_folder",
                        )
                        for p in loose
                    ),
                )
            )
        for person, photos in plan:
            if not photos:
                results.append(
                    EnrollResult(
                        person,
                        None,
                        False,
                        (),
                        (SkippedPhoto(person, f"{person}/", "no photos in folder", "no_photos"),),
                    )
                )
                continue

            def step(done: int, _total: int, base: int = offset) -> None:
                if progress is not None:
                    progress(base + done, total)

            try:
                report = self.enroll_person(
                    person, photos, watchlist=watchlist, multi_face=multi_face, create=create, progress=step
                )
                results.extend(report.results)
            except (PhotoConflictError, AmbiguousPersonError) as e:
                logger.warning("enroll %s refused: %s", person, e)
                code = "photo_conflict" if isinstance(e, PhotoConflictError) else "ambiguous_person"
                results.append(
                    EnrollResult(
                        person, None, False, (), tuple(SkippedPhoto(person, p.name, str(e), code) for p in photos)
                    )
                )
                if progress is not None:
                    progress(offset + len(photos), total)
            offset += len(photos)
        return EnrollReport(tuple(results))

    def _prepare_photo(
        self,
        person: str,
        photo: Path | str | LoadedImage,
        owner_id: int | None,
        seen: set[str],
        multi_face: MultiFace,
    ) -> tuple[FaceRecord, str, str, bytes] | SkippedPhoto:
        from sightline.imaging import ImageError, load_image

        if isinstance(photo, str | Path):
            label = Path(photo).name
            try:
                img = load_image(Path(photo), limits=self.imaging)
            except ImageError as e:
                return SkippedPhoto(person, label, e.reason, e.code)
            except OSError as e:
                return SkippedPhoto(person, label, e.strerror or str(e), "unreadable")
        else:
            img = photo
            label = img.name
        if img.sha256 in seen:
            return SkippedPhoto(person, label, "duplicate", "duplicate")
        for t in self.store.templates_for_photo(img.sha256):
            if owner_id is None or t.person_id != owner_id:
                other = self.store.get_person(t.person_id)
                who = f"person {t.person_id} {other.name!r}" if other else f"person {t.person_id}"
                raise PhotoConflictError(
                    f"photo {label} (sha256 {img.sha256[:12]}…) is already enrolled as {who}; "
                    f"refusing to enrol it as {person!r}. Nothing was written"
                )
            if t.model == self.engine.model:
                seen.add(img.sha256)
                return SkippedPhoto(person, label, "duplicate", "duplicate")
        seen.add(img.sha256)
        faces = self._analyze(img.rgb, subject=True)
        if not faces:
            return SkippedPhoto(person, label, "no face found", "no_face")
        if len(faces) > 1 and multi_face == "skip":
            return SkippedPhoto(person, label, f"{len(faces)} faces found (use --largest)", "multiple_faces")
        face = max(faces, key=lambda f: f.area)
        if face.embedding is None:
            return SkippedPhoto(person, label, "the engine returned no descriptor", "no_embedding")
        if face.embedding.shape != (self.engine.dim,):
            raise GalleryError(
                f"engine returned a descriptor of shape {face.embedding.shape}, expected ({self.engine.dim},)"
            )
        return face, img.sha256, label, encode_crop(img.rgb, face.xyxy)

    def _existing_person(self, name: str, external_id: str | None) -> Person | None:
        if external_id is not None:
            found = self.store.find_persons(external_id=external_id)
            if found and found[0].name != name:
                p = found[0]
                raise GalleryError(f"external id {external_id!r} belongs to person {p.id} {p.name!r}, not {name!r}")
            return found[0] if found else None
        found = self.store.find_persons(name=name)
        if len(found) > 1:
            ids = ", ".join(f"{p.id} (external id {p.external_id or '-'})" for p in found)
            raise AmbiguousPersonError(
                f"{len(found)} persons are named {name!r}: ids {ids}; give the external id to choose"
            )
        return found[0] if found else None

    # -- search and verify -------------------------------------------------------------------------

    def search(
        self, image: Path | str | LoadedImage | Image, *, watchlist: str | None = None, top_k: int = 5
    ) -> list[FaceSearchResult]:
        """Every face in the photo (largest first) with its ``top_k`` gallery candidates.

        Each candidate's ``is_match`` compares its similarity with the watchlist's threshold, or the
        model's default when the watchlist has none or ``watchlist`` is None (the whole gallery).
        """
        rgb = self._rgb(image)
        wl = self.get_watchlist(watchlist) if watchlist is not None else None
        faces = [f for f in self._analyze(rgb) if f.embedding is not None]
        if not faces:
            return []
        threshold = self._threshold(wl)
        cands = self.identify(np.stack([f.embedding for f in faces]), watchlist=wl, top_k=top_k)  # type: ignore[misc]
        return [
            FaceSearchResult(face=f, candidates=c, watchlist=wl.name if wl else None, threshold=threshold)
            for f, c in zip(faces, cands, strict=True)
        ]

    def identify(
        self, embeddings: npt.ArrayLike, *, watchlist: str | Watchlist | None = None, top_k: int = 5
    ) -> list[tuple[Candidate, ...]]:
        """Candidates for descriptors already computed (e.g. a video track's best shot).

        embeddings: (Q, D) float32, L2-normalised, of the engine's model. Returns Q tuples of at most
        ``top_k`` candidates, similarity descending.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        wl = self.get_watchlist(watchlist) if isinstance(watchlist, str) else watchlist
        threshold = self._threshold(wl)
        members = self.store.member_ids(wl.id) if wl is not None else None
        self._sync()
        hits = self._index.search(np.asarray(embeddings, np.float32), top_k, members)
        persons = self.store.persons_by_id({h.person_id for row in hits for h in row})
        cal = self.engine.calibration
        out = []
        for row in hits:
            cands = []
            for h in row:
                p = persons.get(h.person_id)
                if p is None:  # deleted by another process after the index was synced
                    continue
                cands.append(
                    Candidate(
                        person_id=p.id,
                        name=p.name,
                        similarity=h.similarity,
                        threshold=threshold,
                        is_match=h.similarity >= threshold,
                        est_fmr=float(cal.est_fmr(h.similarity)),
                        template_id=h.template_id,
                        external_id=p.external_id,
                    )
                )
            out.append(tuple(cands))
        return out

    def verify(self, a: Path | str | LoadedImage | Image, b: Path | str | LoadedImage | Image) -> VerifyResult:
        """Compare the largest face of two photos against the model's default threshold.

        Raises ``NoFaceError`` naming the photo in which no face was found.
        """
        faces = []
        for which, img in (("first", a), ("second", b)):
            found = [f for f in self._analyze(self._rgb(img)) if f.embedding is not None]
            if not found:
                raise NoFaceError(f"no face found in the {which} photo ({_label(img)})")
            faces.append(max(found, key=lambda f: f.area))
        fa, fb = faces
        sim = float(np.dot(fa.embedding, fb.embedding))  # type: ignore[arg-type]
        cal = self.engine.calibration
        thr = float(cal.default_threshold)
        return VerifyResult(sim, thr, sim >= thr, float(cal.est_fmr(sim)), fa, fb)

    # -- watchlists ----------------------------------------------------------------------------------

    def create_watchlist(self, name: str, description: str = "", threshold: float | None = None) -> Watchlist:
        """A new watchlist; ``threshold`` None means the model's default. Names are unique, ignoring case."""
        return self.store.create_watchlist(name, description, threshold)

    def ensure_watchlist(self, name: str, description: str = "", threshold: float | None = None) -> Watchlist:
        """The watchlist ``name``, created with these settings when it does not exist."""
        wl = self.store.get_watchlist(name)
        if wl is not None:
            return wl
        try:
            return self.store.create_watchlist(name, description, threshold)
        except GalleryError:  # created by another process meanwhile
            wl = self.store.get_watchlist(name)
            if wl is None:
                raise
            return wl

    def list_watchlists(self) -> list[Watchlist]:
        """Every watchlist with its member count, by name."""
        return self.store.list_watchlists()

    def get_watchlist(self, name: str) -> Watchlist:
        wl = self.store.get_watchlist(name)
        if wl is None:
            names = ", ".join(repr(w.name) for w in self.store.list_watchlists()) or "none yet"
            raise UnknownWatchlistError(f"no watchlist {name!r}; existing watchlists: {names}")
        return wl

    def delete_watchlist(self, name: str) -> None:
        """Delete a watchlist and its memberships; the persons and their templates stay."""
        self.store.delete_watchlist(self.get_watchlist(name).id)

    def add_member(self, watchlist: str, person: int | str) -> bool:
        """Add a person to a watchlist; False when they already were a member."""
        return self.store.add_member(self.get_watchlist(watchlist).id, self.get_person(person).id)

    def remove_member(self, watchlist: str, person: int | str) -> bool:
        """Remove a person from a watchlist; False when they were not a member."""
        return self.store.remove_member(self.get_watchlist(watchlist).id, self.get_person(person).id)

    # -- persons -------------------------------------------------------------------------------------

    def list_persons(self, watchlist: str | None = None) -> list[PersonInfo]:
        """Persons (of one watchlist, or all) with template counts and watchlists, by name."""
        wl_id = self.get_watchlist(watchlist).id if watchlist is not None else None
        return self.store.person_info(watchlist_id=wl_id)

    def get_person(self, ref: int | str) -> PersonInfo:
        """A person by id, or by exact name (``AmbiguousPersonError`` when several share it)."""
        if isinstance(ref, int):
            found = self.store.person_info([ref])
            if not found:
                raise UnknownPersonError(f"no person with id {ref}")
            return found[0]
        persons = self.store.find_persons(name=ref)
        if not persons:
            raise UnknownPersonError(f"no person named {ref!r}")
        if len(persons) > 1:
            ids = ", ".join(str(p.id) for p in persons)
            raise AmbiguousPersonError(f"{len(persons)} persons are named {ref!r} (ids {ids}); use the id")
        return self.store.person_info([persons[0].id])[0]

    def delete_person(self, person_id: int) -> None:
        """Delete a person with their templates and memberships; the index forgets them at once."""
        with self.store.transaction():
            before = self.store.generation()
            if not self.store.delete_person(person_id):
                raise UnknownPersonError(f"no person with id {person_id}")
            after = self.store.generation()
        self._apply(before, after, lambda idx: idx.remove_persons([person_id]))
        logger.info("deleted person %s", person_id)

    def delete_template(self, template_id: int) -> None:
        """Delete one template (e.g. a poor photo); the person stays, even with no template left."""
        with self.store.transaction():
            before = self.store.generation()
            if not self.store.delete_template(template_id):
                raise GalleryError(f"no template with id {template_id}")
            after = self.store.generation()
        self._apply(before, after, lambda idx: idx.remove_templates([template_id]))

    # -- index sync ----------------------------------------------------------------------------------

    @property
    def index_size(self) -> int:
        """Templates of the engine's model in the (synced) index."""
        self._sync()
        return len(self._index)

    def _sync(self) -> None:
        """Reload the index when the store's template generation moved since it was loaded."""
        if self.store.generation() == self._index_gen:
            return
        with self._sync_lock:
            with self.store.transaction(write=False):
                gen = self.store.generation()
                if gen == self._index_gen:
                    return
                tids, pids, mat = self.store.load_descriptors(self.engine.model)
            if len(tids) and mat.shape[1] != self.engine.dim:
                raise GalleryError(
                    f"gallery templates of model {self.engine.model!r} have {mat.shape[1]} dimensions but the "
                    f"engine gives {self.engine.dim}"
                )
            self._index.clear()
            self._index.add(tids, pids, mat.reshape(-1, self.engine.dim))
            self._index_gen = gen
            others = {m: n for m, n in self.store.model_counts().items() if m != self.engine.model}
            if others:
                logger.info("gallery: ignoring templates of other models %s (engine is %s)", others, self.engine.model)
            logger.debug("gallery index loaded: %s templates, generation %s", len(tids), gen)

    def _apply(self, before: int, after: int, change: Callable[[VectorIndex], None]) -> None:
        """Apply our own committed change to the index, or mark it for reload when it was stale."""
        with self._sync_lock:
            if self._index_gen is None or self._index_gen == after:
                return  # not loaded yet, or already reloaded with this change in it
            if self._index_gen == before:
                change(self._index)
                self._index_gen = after
            else:
                self._index_gen = None

    # -- helpers -------------------------------------------------------------------------------------

    def _analyze(self, rgb: Image, *, subject: bool = False) -> list[FaceRecord]:
        """subject=True for enrollment: the photo's main faces, found coarse to fine (cheaper)."""
        with self._engine_lock:
            return self.engine.analyze(rgb, embed=True, subject=subject)

    def _rgb(self, image: Path | str | LoadedImage | Image) -> Image:
        if isinstance(image, np.ndarray):
            return image
        if isinstance(image, str | Path):
            from sightline.imaging import load_image

            return load_image(Path(image), limits=self.imaging).rgb
        return image.rgb

    def _threshold(self, wl: Watchlist | None) -> float:
        if wl is not None and wl.threshold is not None:
            return float(wl.threshold)
        return float(self.engine.calibration.default_threshold)


def _label(image: object) -> str:
    if isinstance(image, str | Path):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"array {image.shape}"
    return str(getattr(image, "name", "image"))
