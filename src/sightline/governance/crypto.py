"""Encryption at rest of biometric blobs (face crops, photos, descriptors): AES-256-GCM with a keyring.

    keyring = load_keyring(data_dir)          # SIGHTLINE_KEY, else <data_dir>/sightline.key (created 0600)
    store.set_cipher(AesGcmCipher(keyring))   # GalleryStore.open(data_dir) does both

A sealed blob is ``SEALED_MAGIC`` (b"SLE1") | key id (8 bytes) | nonce (12 bytes, random) | ciphertext
and 16-byte tag; the magic and key id are authenticated (AAD), so a flipped bit anywhere, or a blob
relabelled with another key id, fails with ``SealedBlobError``. The key id is the first 8 bytes of
sha256("sightline-key-id" | key): it names a key without revealing it, and the same key always gets the
same id (a key given in the environment needs no stored id). Overhead: 40 bytes per blob.

Keys, from the first of these sources that is set (``key_source``):
1. a key file named explicitly: ``--key-file PATH`` (the CLI exports it as ``SIGHTLINE_KEY_FILE``), the
   server's ``key_file`` setting, or ``SIGHTLINE_KEY_FILE`` (the setting wins over the variable). Created
   (0600) at first use when missing, so it can live on another mount than the data directory. Naming a key
   file *and* setting ``SIGHTLINE_KEY`` is refused as ambiguous.
2. ``SIGHTLINE_KEY``: one or more comma-separated keys (base64 or 64 hex chars, 32 bytes each); the first
   seals, all unseal (list the old key after the new one while ``sightline key rotate`` runs).
3. a systemd credential, ``$CREDENTIALS_DIRECTORY/sightline.key`` (``LoadCredential=sightline.key:/path``),
   when ``CREDENTIALS_DIRECTORY`` is set and holds it: read-only, never written or created.
4. otherwise the key file ``<data_dir>/sightline.key``, created at first use.
A key file is JSON (current key id, every key, retired audit keys), created with mode 0600 and replaced
atomically (temp file + rename) on rotation; a file holding only key text (as ``SIGHTLINE_KEY``, e.g. a
credential or a container secret) is read-only. A cipher notices a changed key file (mtime/size) before
its next seal, and re-reads it when it meets an unknown key id, so a server keeps working while
``sightline key rotate`` runs in another process. Errors and logs name the source (a path, a variable)
and key ids, never a key.

Audit keys: the audit chain (``sightline.governance.audit``) is keyed with HMAC-SHA256 under a key derived
from each master key with HKDF-SHA256 (``derive_audit_key``, info ``AUDIT_KEY_INFO``), so the key that seals
faces and the key that signs the audit trail are independent (knowing one tells nothing of the other) and
both are named by the master key's id. Rotation drops an old master key but keeps its derived audit key in
the key file (``audit_keys``), which verifies old entries and opens no blob.

Limits: a sealed blob is not bound to its row (two sealed crops could be swapped by someone with write
access; the audit log records who changed what, the encryption only keeps faces unreadable). Whoever
holds the key file and the database holds the faces: keep the key file on another volume or in the
environment for deployments where backups of the data directory leave the site.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sightline.gallery.records import GalleryError
from sightline.gallery.store import SEALED_MAGIC, GalleryStore

logger = logging.getLogger(__name__)

KEY_ENV = "SIGHTLINE_KEY"
#: A key file named by path (``--key-file`` sets it for the command's process).
KEY_FILE_ENV = "SIGHTLINE_KEY_FILE"
#: Set by systemd for a unit with ``LoadCredential=``/``SetCredential=``; ``CREDENTIAL_NAME`` is read from it.
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
CREDENTIAL_NAME = "sightline.key"
KEY_FILE = "sightline.key"
#: HKDF ``info`` of the audit-chain key derived from a master key (``derive_audit_key``).
AUDIT_KEY_INFO = b"sightline audit chain v1"
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(SEALED_MAGIC) + KEY_ID_BYTES + NONCE_BYTES
#: Bytes a sealed blob adds to its plaintext.
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES


class KeyringError(GalleryError):
    """A key that cannot be loaded, parsed or found."""


class SealedBlobError(GalleryError):
    """A sealed blob that cannot be opened: tampered, truncated, or sealed with a key we do not hold."""


def key_id(key: bytes) -> bytes:
    """The 8-byte id of a 32-byte key (sha256 of a label and the key; reveals nothing about it)."""
    return hashlib.sha256(b"sightline-key-id" + key).digest()[:KEY_ID_BYTES]


def derive_audit_key(key: bytes) -> bytes:
    """The 32-byte audit-chain HMAC key of a master key: HKDF-SHA256(key, salt none, info ``AUDIT_KEY_INFO``).

    One-way: the audit key does not reveal the master key (so a retired audit key kept for verification
    opens no blob), and the master key's AES use and this HMAC use never share key bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=AUDIT_KEY_INFO).derive(bytes(key))


def generate_key() -> bytes:
    """A fresh random 32-byte AES-256 key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as text for SIGHTLINE_KEY (standard base64)."""
    return base64.b64encode(key).decode("ascii")


def parse_key(text: str) -> bytes:
    """A 32-byte key from 64 hex chars or base64 (standard or URL-safe); raises ``KeyringError``."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as e:
            raise KeyringError("a key must be 32 bytes as 64 hex characters or base64") from e
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"a key must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class Keyring:
    """Keys by id and the id that seals. ``source``: 'env', the key file's path, or 'memory'.

    audit_keys: derived audit keys of retired master keys (by the master key's id), kept to verify audit
    entries made under them; read_only: the source cannot be written (a credential, a key-text file)."""

    keys: Mapping[bytes, bytes]
    current: bytes
    source: str = "memory"
    created_at: Mapping[bytes, float] = field(default_factory=dict)
    audit_keys: Mapping[bytes, bytes] = field(default_factory=dict)
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringError(f"the current key {self.current.hex()} is not in the keyring")
        for kid, key in self.keys.items():
            if len(key) != KEY_BYTES or key_id(key) != kid:
                raise KeyringError(f"keyring entry {kid.hex()} does not hold the key with that id")
        for kid, akey in self.audit_keys.items():
            if len(kid) != KEY_ID_BYTES or len(akey) != KEY_BYTES:
                raise KeyringError(f"retired audit key {kid.hex()} is not an 8-byte id with a 32-byte key")

    def all_audit_keys(self) -> dict[bytes, bytes]:
        """Audit-chain HMAC keys by master key id: derived from every held key, plus the retired ones."""
        return {**self.audit_keys, **{kid: derive_audit_key(k) for kid, k in self.keys.items()}}

    @classmethod
    def single(cls, key: bytes, source: str = "memory") -> Keyring:
        kid = key_id(key)
        return cls(keys={kid: key}, current=kid, source=source)

    @property
    def from_env(self) -> bool:
        return self.source == "env"

    def ids(self) -> list[str]:
        return [k.hex() for k in self.keys]


# -- key file ----------------------------------------------------------------------------------------


def key_file(data_dir: Path) -> Path:
    """The default key file of a data directory (``key_source`` says which file a process uses)."""
    return Path(data_dir) / KEY_FILE


def parse_keys_text(text: str, where: str) -> list[bytes]:
    """Keys from text as in ``SIGHTLINE_KEY`` (comma- or whitespace-separated); raises ``KeyringError``
    naming ``where`` (never the text)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise KeyringError(f"{where} holds no key")
    try:
        return [parse_key(p) for p in parts]
    except KeyringError as e:
        raise KeyringError(f"{where}: {e}") from None


def read_key_file(path: Path, *, read_only: bool = False) -> Keyring:
    """Parse a key file; raises ``KeyringError`` naming the problem. Warns when others can read it.

    A JSON key file (``write_key_file``) is writable unless ``read_only``; a file holding only key text
    (one or more keys as in ``SIGHTLINE_KEY``, e.g. a systemd credential) is always read-only."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyringError(f"cannot read key file {path}: {type(e).__name__}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("key file %s is readable by others (mode %o); chmod 600 it", path, st.st_mode & 0o777)
    if not text.lstrip().startswith("{"):
        keys_list = parse_keys_text(text, f"key file {path}")
        return Keyring(
            keys={key_id(k): k for k in keys_list}, current=key_id(keys_list[0]), source=str(path), read_only=True
        )
    try:
        data = json.loads(text)
        keys = {}
        created = {}
        for entry in data["keys"]:
            key = parse_key(entry["key"])
            keys[key_id(key)] = key
            created[key_id(key)] = float(entry.get("created_at") or 0.0)
        current = bytes.fromhex(data["current"])
        audit_keys = {bytes.fromhex(a["id"]): parse_key(a["key"]) for a in data.get("audit_keys", [])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        # The exception text of a JSON or key parse error never quotes a key; name its type only to be sure.
        raise KeyringError(f"key file {path} is not a Sightline key file ({type(e).__name__})") from None
    return Keyring(
        keys=keys, current=current, source=str(path), created_at=created, audit_keys=audit_keys, read_only=read_only
    )


def write_key_file(path: Path, keyring: Keyring) -> None:
    """Write ``keyring`` atomically (temp file 0600 + fsync + rename); the current key first."""
    order = [keyring.current, *(k for k in keyring.keys if k != keyring.current)]
    data = {
        "format": "sightline-keyring-1",
        "current": keyring.current.hex(),
        "keys": [
            {
                "id": kid.hex(),
                "key": encode_key(keyring.keys[kid]),
                "created_at": keyring.created_at.get(kid) or time.time(),
            }
            for kid in order
        ],
    }
    retired = {kid: k for kid, k in keyring.audit_keys.items() if kid not in keyring.keys}
    if retired:
        data["audit_keys"] = [{"id": kid.hex(), "key": encode_key(k)} for kid, k in retired.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@dataclass(frozen=True)
class KeySource:
    """Where a process's keys come from (``key_source``). kind: 'option' (``--key-file`` / the server's
    ``key_file``), 'env-file' (``SIGHTLINE_KEY_FILE``), 'env' (``SIGHTLINE_KEY``), 'credential'
    (``$CREDENTIALS_DIRECTORY/sightline.key``, read-only) or 'data-dir' (``<data_dir>/sightline.key``);
    path: the key file (None for 'env')."""

    kind: Literal["option", "env-file", "env", "credential", "data-dir"]
    path: Path | None

    @property
    def may_create(self) -> bool:
        """Whether a missing key file may be created here (never a credential, never the environment)."""
        return self.kind in ("option", "env-file", "data-dir")

    def describe(self) -> str:
        """For messages: names the variable or the path, never a key."""
        if self.kind == "env":
            return KEY_ENV
        label = {"option": "--key-file", "env-file": KEY_FILE_ENV, "credential": "systemd credential"}.get(self.kind)
        return f"{self.path} ({label})" if label else str(self.path)


def key_source(data_dir: Path, *, key_file: Path | None = None, env: Mapping[str, str] | None = None) -> KeySource:
    """Which key source applies (see the module docstring for the order). Raises ``KeyringError`` when a
    key file is named and ``SIGHTLINE_KEY`` is set too (two keys: which one seals is not guessed)."""
    env = os.environ if env is None else env
    named_env = env.get(KEY_FILE_ENV, "").strip()
    named: KeySource | None = None
    if key_file is not None:
        named = KeySource("option", Path(key_file).expanduser())
    elif named_env:
        named = KeySource("env-file", Path(named_env).expanduser())
    if env.get(KEY_ENV, "").strip():
        if named is not None:
            raise KeyringError(
                f"both {KEY_ENV} and a key file ({named.describe()}) are given: unset one of them, "
                "so that it is clear which key seals"
            )
        return KeySource("env", None)
    if named is not None:
        return named
    creds = env.get(CREDENTIALS_ENV, "").strip()
    if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
        return KeySource("credential", Path(creds) / CREDENTIAL_NAME)
    return KeySource("data-dir", Path(data_dir) / KEY_FILE)


def load_keyring(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    create: bool = True,
    key_file: Path | None = None,
) -> Keyring:
    """The keys for a data directory from ``key_source``: a key file is created (0600) with a fresh key
    when missing and ``create`` (never a credential). Raises ``KeyringError`` for an unusable key or key
    file, naming the source, never a key."""
    env = os.environ if env is None else env
    src = key_source(data_dir, key_file=key_file, env=env)
    if src.kind == "env":
        keys = parse_keys_text(env.get(KEY_ENV, ""), KEY_ENV)
        return Keyring(keys={key_id(k): k for k in keys}, current=key_id(keys[0]), source="env")
    path = src.path
    assert path is not None
    if src.kind == "credential":
        return read_key_file(path, read_only=True)
    if path.exists():
        return read_key_file(path)
    if not create:
        raise KeyringError(f"no key: {KEY_ENV} is not set and {src.describe()} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    kid = key_id(key)
    ring = Keyring(keys={kid: key}, current=kid, source=str(path), created_at={kid: time.time()})
    try:
        # O_EXCL: two processes starting at once must not both create (and one overwrite) a key.
        fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process is creating it
            if path.exists():
                return read_key_file(path)
            time.sleep(0.1)
        raise KeyringError(f"{path}.lock exists but no key file appeared; remove the stale lock") from None
    try:
        if path.exists():
            return read_key_file(path)
        write_key_file(path, ring)
        logger.info("created encryption key %s in %s (mode 0600)", ring.current.hex(), path)
    finally:
        os.close(fd)
        path.with_name(path.name + ".lock").unlink(missing_ok=True)
    return ring


# -- the cipher ----------------------------------------------------------------------------------------


class AesGcmCipher:
    """``BlobCipher`` with AES-256-GCM: seals with the keyring's current key, unseals by key id.

    ``key_path``: the key file the keyring came from (None for env/memory keys); the cipher reloads it when
    it changed on disk (checked before each seal, and on an unknown key id). Thread-safe.
    """

    def __init__(self, keyring: Keyring, *, key_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._key_path = key_path
        self._stamp = self._file_stamp()
        self._set(keyring)

    def _set(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._aead = {kid: AESGCM(key) for kid, key in keyring.keys.items()}

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._key_path is None:
            return None
        try:
            st = self._key_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self) -> bool:
        """Re-read the key file when it changed since it was loaded; True when it was reloaded."""
        if self._key_path is None:
            return False
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            ring = read_key_file(self._key_path, read_only=self.keyring.read_only)
            self._set(ring)
            self._stamp = stamp
        logger.info("reloaded key file %s: current key %s", self._key_path, ring.current.hex())
        return True

    @property
    def current_id(self) -> str:
        return self.keyring.current.hex()

    def seal(self, data: bytes) -> bytes:
        """``SLE1 | key id | nonce | AES-GCM(data) + tag`` with the current key (40 bytes of overhead)."""
        self.reload_if_changed()
        kid = self.keyring.current
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = SEALED_MAGIC + kid
        return header + nonce + self._aead[kid].encrypt(nonce, bytes(data), header)

    def unseal(self, blob: bytes) -> bytes:
        """The plaintext of a sealed blob; raises ``SealedBlobError`` when it is not one, was altered, or
        was sealed with a key this keyring does not hold."""
        blob = bytes(blob)
        if not blob.startswith(SEALED_MAGIC) or len(blob) < OVERHEAD_BYTES:
            raise SealedBlobError(f"not a sealed blob ({len(blob)} bytes, expected the SLE1 header and a tag)")
        kid = blob_key_id(blob)
        aead = self._aead.get(kid)
        if aead is None and self.reload_if_changed():
            aead = self._aead.get(kid)
        if aead is None:
            raise SealedBlobError(
                f"blob was sealed with key {kid.hex()}, which is not in the keyring "
                f"({', '.join(self.keyring.ids())}); restore the key file or add the key to {KEY_ENV}"
            )
        header = blob[: len(SEALED_MAGIC) + KEY_ID_BYTES]
        nonce = blob[len(header) : HEADER_BYTES]
        try:
            return aead.decrypt(nonce, blob[HEADER_BYTES:], header)
        except InvalidTag as e:
            raise SealedBlobError(
                f"sealed blob (key {kid.hex()}) failed authentication: it was altered or truncated"
            ) from e


def blob_key_id(blob: bytes) -> bytes:
    """The key id of a sealed blob (no check that the rest is valid)."""
    return bytes(blob[len(SEALED_MAGIC) : len(SEALED_MAGIC) + KEY_ID_BYTES])


def cipher_for(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    create: bool = True,
    key_file: Path | None = None,
) -> AesGcmCipher:
    """The cipher of a data directory (``load_keyring``); watches the key file when one is used."""
    ring = load_keyring(data_dir, env=env, create=create, key_file=key_file)
    return AesGcmCipher(ring, key_path=None if ring.from_env else Path(ring.source))


def has_key(data_dir: Path, *, env: Mapping[str, str] | None = None, key_file: Path | None = None) -> bool:
    """Whether a key is available without creating one (``SIGHTLINE_KEY`` set or the key file present)."""
    src = key_source(data_dir, key_file=key_file, env=env)
    return src.path is None or src.path.exists()


def check_opens(store: GalleryStore, cipher: AesGcmCipher) -> None:
    """Refuse a keyring that cannot open the gallery: the newest sealed descriptor's key id must be in it.

    A cheap check at open time (one row read from the end), so a server started with the wrong
    ``SIGHTLINE_KEY`` fails at once with a clear message instead of at its first search. It checks the key
    id only, not the blob, so one damaged blob does not make the whole gallery unopenable."""
    row = (
        store._conn()
        .execute(
            "SELECT descriptor FROM templates WHERE substr(descriptor, 1, 4) = ? ORDER BY id DESC LIMIT 1",
            (SEALED_MAGIC,),
        )
        .fetchone()
    )
    if row is None:
        return
    kid = blob_key_id(bytes(row[0]))
    if kid in cipher.keyring.keys or (cipher.reload_if_changed() and kid in cipher.keyring.keys):
        return
    raise KeyringError(
        f"gallery {store.path} is sealed with key {kid.hex()}, which is not in the keyring from "
        f"{cipher.keyring.source} ({', '.join(cipher.keyring.ids())}): set the right {KEY_ENV} or key file"
    )
