"""The JSON shapes of the HTTP API: ``XCreate`` / ``XUpdate`` in, ``XPublic`` out.

Timestamps are epoch seconds (float); similarities are cosine similarities in [-1, 1] (higher is
closer); ``est_fmr`` is the estimated false-match rate per comparison at that similarity and
``meaning`` says the same in words; boxes are ``xyxy`` pixels of the image they were found in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sightline.server.auth import Role

#: Largest id a row can have (SQLite INTEGER is a signed 64-bit value); bigger ids are refused with 422.
MAX_ID = 2**63 - 1


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=1, max_length=1024)


class UserPublic(BaseModel):
    id: int
    username: str
    role: Role
    disabled: bool = False
    created_at: float | None = None
    last_login_at: float | None = None


class LoginOut(BaseModel):
    user: UserPublic
    csrf_token: str


class MeOut(BaseModel):
    id: int
    username: str
    role: Role
    csrf_token: str | None = Field(None, description="Echo it in X-CSRF-Token on unsafe requests (cookie sessions)")
    via: Literal["session", "token"]


class UserCreate(_In):
    username: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=1, max_length=1024)
    role: Role


class UserUpdate(_In):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)


class TokenCreate(_In):
    name: str = Field(..., min_length=1, max_length=100)
    ttl_days: float | None = Field(None, gt=0, le=3650, description="Expire after this many days (None: never)")


class TokenPublic(BaseModel):
    id: int
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


class TokenCreated(TokenPublic):
    token: str = Field(..., description="The bearer token; shown once, not stored")


class CameraStatusPublic(BaseModel):
    state: str
    running: bool
    last_error: str | None
    since: float | None
    fps: float
    dropped: int
    analysed: int = 0
    alerts: int = 0


class CameraPublic(BaseModel):
    id: str
    url: str = Field(..., description="Credentials masked")
    options: dict[str, Any]
    created_at: float | None = None
    status: CameraStatusPublic


class CameraCreate(_In):
    id: str = Field(..., min_length=1, max_length=64)
    url: str = Field(..., min_length=1, max_length=2048)
    options: dict[str, Any] = Field(default_factory=dict, description="Other CameraConfig fields")


class CameraUpdate(_In):
    url: str | None = Field(None, min_length=1, max_length=2048)
    options: dict[str, Any] | None = Field(None, description="Replaces the stored options when given")


class WatchlistCreate(_In):
    name: str = Field(..., min_length=1, max_length=100)
    description: str = Field("", max_length=2000)
    threshold: float | None = Field(None, ge=-1, le=1, description="Similarity threshold (None: the model's)")
    fmr: float | None = Field(None, gt=0, le=0.5, description="Or: the false-match rate to set the threshold for")


class WatchlistUpdate(_In):
    description: str | None = Field(None, max_length=2000)
    threshold: float | None = Field(None, ge=-1, le=1)
    fmr: float | None = Field(None, gt=0, le=0.5)
    default_threshold: bool = Field(False, description="True: go back to the model's default threshold")


class WatchlistPublic(BaseModel):
    id: int
    name: str
    description: str
    threshold: float | None = Field(..., description="The watchlist's own threshold, None for the model default")
    effective_threshold: float
    est_fmr: float = Field(..., description="Estimated false-match rate per comparison at the effective threshold")
    meaning: str
    member_count: int
    created_at: float
    threshold_tuned_for: str | None = Field(
        None,
        description="Template mode the threshold was tuned for ('per-photo' or 'fused', `sightline watchlist tune "
        "--templates`); None when set by hand or none",
    )


class MemberAdd(_In):
    person_id: int = Field(..., ge=0, le=MAX_ID, description="Id of the person to add")


class ChannelCreate(_In):
    kind: Literal["webhook", "apprise", "mqtt"]
    target: str = Field(..., min_length=1, max_length=2048)
    secret: str | None = Field(None, max_length=1024)
    options: dict[str, Any] = Field(default_factory=dict)


class PersonCreate(_In):
    name: str = Field(..., min_length=1, max_length=200)
    external_id: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=5000)
    watchlists: list[str] = Field(default_factory=list)
    reason: str = Field(..., min_length=1, max_length=500, description="Case reference or purpose (audited)")


class PhotoPublic(BaseModel):
    template_id: int
    quality: float
    source_name: str | None
    created_at: float
    crop_url: str


class PersonPublic(BaseModel):
    id: int
    name: str
    external_id: str | None
    notes: str | None
    created_at: float
    template_count: int
    watchlists: list[str]
    crop_url: str | None = Field(
        None, description="The person's best enrolled face crop (highest quality); None when no crop is kept"
    )


class PersonDetail(PersonPublic):
    photos: list[PhotoPublic]


class PhotoOutcome(BaseModel):
    name: str
    accepted: bool
    template_id: int | None = None
    reason: str | None = None
    code: str | None = None


class EnrollOut(BaseModel):
    person_id: int
    accepted: int
    skipped: int
    files: list[PhotoOutcome]


class CandidatePublic(BaseModel):
    person_id: int
    name: str
    external_id: str | None
    similarity: float
    threshold: float
    is_match: bool
    est_fmr: float
    meaning: str
    list_templates: int = Field(description="Templates searched (the list's size for the estimate below)")
    stranger_rate: float = Field(description="Estimated chance that a stranger scores this high against the list")
    meaning_for_list: str
    crop_url: str | None


class FacePublic(BaseModel):
    xyxy: list[float]
    quality: float
    candidates: list[CandidatePublic]


class SearchOut(BaseModel):
    watchlist: str | None
    threshold: float
    faces: list[FacePublic]


class AlertPublic(BaseModel):
    id: int
    camera_id: str
    track_id: int
    person_id: int
    person_name: str
    watchlist: str
    similarity: float
    threshold: float
    est_fmr: float
    meaning: str
    list_templates: int = Field(description="Templates of the alert's watchlist now (the size behind the estimate)")
    stranger_rate: float = Field(description="Estimated chance that a stranger scores this high against the list")
    meaning_for_list: str
    ts: float
    xyxy: list[float]
    quality: float
    status: str
    decided_by: str | None
    decided_at: float | None
    comment: str | None
    crop_url: str
    enrolled_crop_url: str | None


class DecisionIn(_In):
    decision: Literal["confirmed", "rejected"]
    comment: str | None = Field(None, max_length=2000)


class SightingPublic(BaseModel):
    id: int
    camera_id: str
    track_id: int
    start_ts: float
    end_ts: float
    frames: int
    quality: float
    person_id: int | None
    person_name: str | None
    watchlist: str | None
    similarity: float | None
    est_fmr: float | None
    crop_url: str | None


class SightingMatch(SightingPublic):
    match_similarity: float = Field(..., description="Similarity of the probe face to this sighting's face")
    match_est_fmr: float
    match_meaning: str


class SightingSearchOut(BaseModel):
    threshold: float
    searched: int = Field(..., description="Stored sightings with a descriptor of this model that were compared")
    faces: int
    matches: list[SightingMatch]


class DeliveryPublic(BaseModel):
    """One notification delivery (an outbox row): its alert, channel (target redacted, never the secret),
    status ('pending' | 'delivered' | 'failed'), attempts so far and times (epoch s)."""

    id: int
    alert_id: int
    channel_id: int
    kind: str
    target: str
    watchlist: str
    camera_id: str
    person_id: int
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None
