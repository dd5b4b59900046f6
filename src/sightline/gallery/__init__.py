"""The gallery: persons, their face templates and watchlists in one SQLite file, and exact vector search.

    gallery = Gallery.open(settings.data_dir, FaceEngine.from_config(settings.engine))
    gallery.enroll_person("Ada", [Path("ada1.jpg")], watchlist="staff", create=True)
    results = gallery.search(load_image("probe.jpg"), watchlist="staff")

``GalleryStore`` is the file (schema, migrations, CRUD), ``VectorIndex`` the in-memory search, and
``Gallery`` the use-cases over both and the face engine.
"""

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
    SchemaVersionError,
    SearchHit,
    SkippedPhoto,
    Template,
    UnknownPersonError,
    UnknownWatchlistError,
    VerifyResult,
    Watchlist,
)
from sightline.gallery.service import EngineLike, Gallery
from sightline.gallery.store import GALLERY_FILE, SCHEMA_VERSION, GalleryStore

__all__ = [
    "GALLERY_FILE",
    "SCHEMA_VERSION",
    "AmbiguousPersonError",
    "EngineLike",
    "EnrollReport",
    "EnrollResult",
    "FaceSearchResult",
    "Gallery",
    "GalleryError",
    "GalleryStore",
    "NoFaceError",
    "Person",
    "PersonInfo",
    "PhotoConflictError",
    "SchemaVersionError",
    "SearchHit",
    "SkippedPhoto",
    "Template",
    "UnknownPersonError",
    "UnknownWatchlistError",
    "VectorIndex",
    "VerifyResult",
    "Watchlist",
]
