"""Key rotation and key status for encryption at rest.

    report = rotate_key(store, data_dir, audit=audit, actor="cli:root")

Rotation, with the key file (the default):
1. A new key is added to the key file as the current one; the old keys stay in it (readable). Other
   processes notice the changed file before their next seal and seal with the new key from then on.
2. One transaction (the write lock held throughout) re-seals every blob of ``SEALED_BLOB_COLUMNS`` that is
   not yet under the new key (plain blobs of a gallery from before encryption included) and records
   ``key.rotate`` in the audit log. A crash rolls it back: the file then holds both keys and every blob
   is still readable; run the rotation again.
3. Under the write lock again, blobs sealed meanwhile by a process that had not yet seen the new key are
   re-sealed, then the old keys are dropped from the key file (``keep_old=True`` keeps them, e.g. to read
   backups taken before). Freed pages are zeroed (``secure_delete``) and the WAL is truncated, so no blob
   under the dropped key remains in the file.

With ``SIGHTLINE_KEY`` (keys in the environment), a systemd credential or a key file holding only key text,
nothing can be written back: pass the new key (``new_key``, e.g. from ``SIGHTLINE_NEW_KEY``); afterwards put
the new key there (followed by the old one while other processes still run with it) and restart them.

The audit chain stays verifiable: entries name the master key whose derived audit key signed them, and the
key file keeps the derived audit keys of the keys it drops (``Keyring.audit_keys``; they open no blob).
With keys outside a writable key file, keep the old key listed after the new one to verify older entries.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sightline.gallery.store import SEALED_BLOB_COLUMNS, SEALED_MAGIC, GalleryStore
from sightline.governance.crypto import (
    AesGcmCipher,
    Keyring,
    KeyringError,
    blob_key_id,
    derive_audit_key,
    generate_key,
    key_id,
    load_keyring,
    write_key_file,
)

if TYPE_CHECKING:
    from sightline.governance.audit import AuditLog

logger = logging.getLogger(__name__)

_BATCH = 500


@dataclass(frozen=True)
class RotationReport:
    """old_key_ids / new_key_id: hex ids; resealed: blobs re-sealed per ``table.column``; dropped: old keys
    removed from the key file; source: 'env' or the key file path."""

    old_key_ids: list[str]
    new_key_id: str
    resealed: dict[str, int]
    stragglers: int
    dropped: bool
    source: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KeyStatus:
    """The keyring (ids only, never keys) and how many blobs each key seals, per column; 'plain' counts
    blobs stored unencrypted (written before encryption was on, or with ``encrypt=False``)."""

    source: str
    current_key_id: str
    key_ids: list[str]
    blobs: dict[str, dict[str, int]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def blob_census(store: GalleryStore) -> dict[str, dict[str, int]]:
    """``{"table.column": {"<key id hex>" | "plain": count}}`` over ``SEALED_BLOB_COLUMNS``."""
    out: dict[str, dict[str, int]] = {}
    conn = store._conn()
    for table, col in SEALED_BLOB_COLUMNS:
        rows = conn.execute(
            f"SELECT CASE WHEN substr({col}, 1, 4) = ? THEN hex(substr({col}, 5, 8)) ELSE 'plain' END, count(*) "
            f"FROM {table} WHERE {col} IS NOT NULL GROUP BY 1",
            (SEALED_MAGIC,),
        ).fetchall()
        out[f"{table}.{col}"] = {str(k).lower(): int(n) for k, n in rows}
    return out


def key_status(store: GalleryStore, data_dir: Path, *, key_file: Path | None = None) -> KeyStatus:
    ring = load_keyring(data_dir, create=False, key_file=key_file)
    return KeyStatus(
        source=ring.source,
        current_key_id=ring.current.hex(),
        key_ids=ring.ids(),
        blobs=blob_census(store),
    )


def _reseal_all(store: GalleryStore, cipher: AesGcmCipher, new_id: bytes) -> Counter[str]:
    """Re-seal, in the caller's transaction, every blob not already sealed with ``new_id``."""
    conn = store._conn()
    done: Counter[str] = Counter()
    for table, col in SEALED_BLOB_COLUMNS:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT rowid FROM {table} WHERE {col} IS NOT NULL "
                f"AND (substr({col}, 1, 4) != ? OR substr({col}, 5, 8) != ?)",
                (SEALED_MAGIC, new_id),
            )
        ]
        for i in range(0, len(ids), _BATCH):
            chunk = ids[i : i + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT rowid, {col} FROM {table} WHERE rowid IN ({marks})", chunk).fetchall()
            for rowid, blob in rows:
                blob = bytes(blob)
                plain = cipher.unseal(blob) if blob.startswith(SEALED_MAGIC) else blob
                conn.execute(f"UPDATE {table} SET {col} = ? WHERE rowid = ?", (cipher.seal(plain), rowid))
            done[f"{table}.{col}"] += len(rows)
    return done


def rotate_key(
    store: GalleryStore,
    data_dir: Path,
    *,
    audit: AuditLog,
    actor: str,
    new_key: bytes | None = None,
    keep_old: bool = False,
    client: str | None = None,
    key_file: Path | None = None,
) -> RotationReport:
    """Make a new key current and re-seal every blob under it (see the module docstring for the steps and
    what a crash leaves). ``new_key``: required when the keys come from ``SIGHTLINE_KEY``; else a random
    key is made. Sets the store's cipher to the new keyring. Raises ``KeyringError``."""
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    old = load_keyring(data_dir, create=False, key_file=key_file)
    fixed = old.from_env or old.read_only
    if fixed and new_key is None:
        where = "SIGHTLINE_KEY" if old.from_env else f"{old.source} (read-only)"
        raise KeyringError(
            f"the key comes from {where}, which cannot be rewritten: generate a key "
            "(sightline key generate), pass it as SIGHTLINE_NEW_KEY, then put it there in place of the old one"
        )
    key = generate_key() if new_key is None else new_key
    new_id = key_id(key)
    if new_id in old.keys:
        raise KeyringError(f"key {new_id.hex()} is already in the keyring; rotation needs a new key")
    now = time.time()
    ring = Keyring(
        keys={new_id: key, **old.keys},
        current=new_id,
        source=old.source,
        created_at={**old.created_at, new_id: now},
        audit_keys=old.audit_keys,
        read_only=old.read_only,
    )
    path = None if fixed else Path(old.source)
    if path is not None:
        write_key_file(path, ring)  # step 1: both keys readable, the new one seals
    cipher = AesGcmCipher(ring, key_path=path)
    store.set_cipher(cipher)
    conn = store._conn()
    conn.execute("PRAGMA secure_delete = ON")
    old_ids = [k.hex() for k in old.keys]
    with store.transaction():  # step 2
        resealed = _reseal_all(store, cipher, new_id)
        audit.record(
            actor,
            "key.rotate",
            target=f"key:{new_id.hex()}",
            client=client,
            details={
                "old_key_ids": old_ids,
                "new_key_id": new_id.hex(),
                "resealed": dict(resealed),
                "keep_old": keep_old,
            },
        )
    logger.info("key rotated to %s: re-sealed %s blob(s)", new_id.hex(), sum(resealed.values()))
    dropped = False
    with store.transaction():  # step 3: blobs sealed by processes that had not yet seen the new key
        stragglers = sum(_reseal_all(store, cipher, new_id).values())
    # Dropped only after that commit: a crash before it leaves both keys in the file, nothing unreadable.
    if not keep_old and path is not None:
        # The dropped keys' audit keys stay: entries they signed must still verify (they open no blob).
        retired = {**old.audit_keys, **{kid: derive_audit_key(k) for kid, k in old.keys.items()}}
        final = Keyring(
            keys={new_id: key}, current=new_id, source=old.source, created_at={new_id: now}, audit_keys=retired
        )
        write_key_file(path, final)
        store.set_cipher(AesGcmCipher(final, key_path=path))
        dropped = True
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception as e:
        logger.warning("key rotation: WAL checkpoint failed (%s); old ciphertext stays until the next one", e)
    return RotationReport(
        old_key_ids=old_ids,
        new_key_id=new_id.hex(),
        resealed=dict(resealed),
        stragglers=stragglers,
        dropped=dropped,
        source=old.source,
        seconds=time.perf_counter() - t0,
    )


def count_under(store: GalleryStore, kid: bytes) -> int:
    """Blobs sealed with key ``kid`` (for tests and checks)."""
    return sum(census.get(kid.hex(), 0) for census in blob_census(store).values())


__all__ = [
    "KeyStatus",
    "RotationReport",
    "blob_census",
    "blob_key_id",
    "count_under",
    "key_status",
    "rotate_key",
]
