"""Where the encryption key comes from: --key-file / the server setting, SIGHTLINE_KEY_FILE, SIGHTLINE_KEY, a
systemd credential, the data directory; their precedence, and that no key reaches a log, an error or the audit."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sightline.cli.main import app
from sightline.gallery import GalleryStore
from sightline.governance import crypto
from sightline.governance.audit import CHECKPOINT_FILE, AuditLog
from sightline.governance.crypto import KeyringError
from sightline.governance.keys import rotate_key
from tests.governance.conftest import populate

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("SIGHTLINE_KEY", "SIGHTLINE_NEW_KEY"):
        monkeypatch.delenv(name, raising=False)


def key_text(k: bytes) -> str:
    return crypto.encode_key(k)


def creds_dir(tmp_path: Path, content: str | None) -> Path:
    d = tmp_path / "credentials"
    d.mkdir()
    if content is not None:
        (d / "sightline.key").write_text(content)
        os.chmod(d / "sightline.key", 0o400)
    os.chmod(d, 0o500)  # systemd's credential directory is read-only
    return d


def test_precedence_of_the_sources(tmp_path, monkeypatch):
    data = tmp_path / "data"
    env: dict[str, str] = {}
    assert crypto.key_source(data, env=env).path == data / "sightline.key"
    creds = creds_dir(tmp_path, key_text(crypto.generate_key()))
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    assert crypto.key_source(data, env=env).kind == "credential"
    env["SIGHTLINE_KEY"] = key_text(crypto.generate_key())
    assert crypto.key_source(data, env=env).kind == "env"  # the environment beats the credential
    del env["SIGHTLINE_KEY"]
    env["SIGHTLINE_KEY_FILE"] = str(tmp_path / "env.key")
    assert crypto.key_source(data, env=env) == crypto.KeySource("env-file", tmp_path / "env.key")
    src = crypto.key_source(data, key_file=tmp_path / "opt.key", env=env)  # the setting beats the variable
    assert src == crypto.KeySource("option", tmp_path / "opt.key")
    env["SIGHTLINE_KEY"] = key_text(crypto.generate_key())
    for kw in ({}, {"key_file": tmp_path / "opt.key"}):  # a named file and SIGHTLINE_KEY: refused, not guessed
        with pytest.raises(KeyringError, match="both SIGHTLINE_KEY and a key file") as e:
            crypto.key_source(data, env=env, **kw)
        assert env["SIGHTLINE_KEY"] not in str(e.value)
    # A credentials directory without our credential falls through to the data directory.
    assert crypto.key_source(data, env={"CREDENTIALS_DIRECTORY": str(tmp_path)}).kind == "data-dir"


def test_a_key_file_outside_the_data_directory_is_created_there_and_used(tmp_path):
    data, key = tmp_path / "data", tmp_path / "mnt" / "keys" / "sightline.key"
    w = populate(data, key_file=key)
    w.gallery.close()
    assert key.exists() and not (data / "sightline.key").exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with GalleryStore.open(data, key_file=key) as store:
        assert store.cipher.keyring.source == str(key)
        assert store.unseal(store._conn().execute("SELECT crop_jpeg FROM alerts").fetchone()[0])
        assert AuditLog(store).verify().ok
    # Without it the encrypted gallery is refused (no new key is made in the data directory).
    with pytest.raises(Exception, match="key is missing"):
        GalleryStore.open(data)
    assert not (data / "sightline.key").exists()


@pytest.mark.parametrize("form", ["key-text", "keyring-json"])
def test_a_systemd_credential_is_read_and_never_written(tmp_path, monkeypatch, form):
    k1 = crypto.generate_key()
    if form == "key-text":
        content = key_text(k1) + "\n"
    else:
        ring = crypto.Keyring.single(k1)
        p = tmp_path / "ring.json"
        crypto.write_key_file(p, ring)
        content = p.read_text()
    creds = creds_dir(tmp_path, content)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    data = tmp_path / "data"
    w = populate(data)
    store = w.store
    assert store.cipher.keyring.keys == {crypto.key_id(k1): k1} and store.cipher.keyring.read_only
    assert not (data / "sightline.key").exists()
    before = sorted(os.listdir(creds)), (creds / "sightline.key").read_bytes()
    # Rotation cannot rewrite a credential: it needs the new key given, and then writes nothing there.
    with pytest.raises(KeyringError, match="read-only"):
        rotate_key(store, data, audit=w.audit, actor="cli:root")
    k2 = crypto.generate_key()
    report = rotate_key(store, data, audit=w.audit, actor="cli:root", new_key=k2)
    assert not report.dropped
    assert (sorted(os.listdir(creds)), (creds / "sightline.key").read_bytes()) == before
    # Checkpoints never go to the read-only credentials directory.
    assert (data / CHECKPOINT_FILE).exists()
    assert AuditLog(store).verify().ok
    w.gallery.close()


def test_the_cli_key_file_option_and_variable(tmp_path, monkeypatch):
    data, key = tmp_path / "data", tmp_path / "keys" / "k.json"
    res = runner.invoke(app, ["--data-dir", str(data), "--key-file", str(key), "key", "status", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["source"] == str(key) and not (data / "sightline.key").exists()
    assert "SIGHTLINE_KEY_FILE" not in os.environ  # put back when the command ended
    monkeypatch.setenv("SIGHTLINE_KEY_FILE", str(key))
    res = runner.invoke(app, ["--data-dir", str(data), "audit", "verify", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["checkpoint_file"] in (None, str(key.parent / CHECKPOINT_FILE))
    other = tmp_path / "other.json"  # the option beats the variable
    res = runner.invoke(app, ["--data-dir", str(data), "--key-file", str(other), "key", "status", "--json"])
    assert json.loads(res.stdout)["source"] == str(other)
    assert os.environ["SIGHTLINE_KEY_FILE"] == str(key)


def test_no_key_appears_in_logs_errors_outputs_the_audit_or_checkpoints(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    data, key = tmp_path / "data", tmp_path / "keys" / "k.json"
    w = populate(data, key_file=key)
    ring = w.store.cipher.keyring
    secrets = []
    outputs = []

    def remember(ring: crypto.Keyring) -> None:
        for k in [*ring.keys.values(), *ring.all_audit_keys().values()]:
            secrets.extend([crypto.encode_key(k), k.hex(), crypto.encode_key(k).rstrip("=")])

    remember(ring)
    w.gallery.close()
    base = ["--data-dir", str(data), "--key-file", str(key)]
    for args in (["key", "status"], ["key", "rotate"], ["audit", "verify"], ["audit", "checkpoint"]):
        res = runner.invoke(app, [*base, *args, "--json"])
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    remember(crypto.read_key_file(key))
    # Errors: SIGHTLINE_KEY together with a key file; a wrong SIGHTLINE_KEY; a damaged key file.
    monkeypatch.setenv("SIGHTLINE_KEY", secrets[0])
    outputs.append(runner.invoke(app, [*base, "audit", "verify", "--json"]).output)
    monkeypatch.delenv("SIGHTLINE_KEY")
    monkeypatch.setenv("SIGHTLINE_KEY", key_text(crypto.generate_key()))
    secrets.append(os.environ["SIGHTLINE_KEY"])
    outputs.append(runner.invoke(app, ["--data-dir", str(data), "audit", "verify", "--json"]).output)
    monkeypatch.delenv("SIGHTLINE_KEY")
    broken = tmp_path / "broken.key"
    broken.write_text('{"current": "00", "keys": [{"key": "' + secrets[0] + '"}]')  # not valid JSON
    outputs.append(runner.invoke(app, ["--data-dir", str(data), "--key-file", str(broken), "key", "status"]).output)
    assert all(o.strip() for o in outputs)
    conn = sqlite3.connect(data / "gallery.sqlite3")
    audit_text = json.dumps(conn.execute("SELECT * FROM audit_log").fetchall())
    conn.close()
    checkpoints = (key.parent / CHECKPOINT_FILE).read_text()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for s in secrets:
        for where, text in (
            ("output", "\n".join(outputs)),
            ("audit", audit_text),
            ("checkpoints", checkpoints),
            ("logs", logs),
        ):
            assert s not in text, where
