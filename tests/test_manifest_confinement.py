"""Issue 13 item 14: a manifest `file` outside the models folder is refused by name, never opened or hashed.

The old agent joined `models_dir / file` and hashed whatever that named: `../../../../etc/shadow`
was opened, and its sha256 prefix and size went out on `cmd/reload/result`. Here the outside file
is a secret of the test's own, so an old agent would show its hash or even accept it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edge.models.manifest import ManifestError, read_manifest, sha256_file, verify_file
from tests.conftest import MODELS_DIR
from tests.helpers.mqtt import AgentProcess, Broker, Collector, publish, write_config

BASE = "edgepipe/test"
SECRET = b"root:$y$j9T$not-a-model$:19000:0:99999:7:::\n" * 40


def models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "deep" / "er" / "models"
    shutil.copytree(MODELS_DIR, models)
    return models


def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "etc" / "shadow"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(SECRET)
    return secret


def point_entry_at(models: Path, file: str, sha_of: Path | None = None) -> None:
    """Rewrite the autoencoder's entry to name `file`; with `sha_of`, a hash and size that match it."""
    manifest = json.loads((models / "manifest.json").read_text())
    entry = manifest["models"]["autoencoder"]
    entry["file"] = file
    if sha_of is not None:
        entry["sha256"], entry["size_bytes"] = sha256_file(sha_of), sha_of.stat().st_size
    (models / "manifest.json").write_text(json.dumps(manifest))


def leaks(text: str, secret: Path) -> list[str]:
    """What of the outside file's identity shows in `text` (its hash prefix, its size)."""
    return [s for s in (sha256_file(secret)[:12], f"{secret.stat().st_size} bytes") if s in text]


ESCAPES = ["../../../../etc/shadow", "/etc/shadow", "sub/../../../../etc/shadow", "..\\..\\etc\\shadow",
           "", "a\x00b"]


@pytest.mark.parametrize("file", ESCAPES)
def test_manifest_file_outside_models_folder_is_refused_on_read(tmp_path: Path, file: str) -> None:
    models = models_copy(tmp_path)
    point_entry_at(models, file)
    with pytest.raises(ManifestError, match=r"model 'autoencoder'.*'file'"):
        read_manifest(models / "manifest.json")


def test_manifest_file_escaping_by_dotdot_is_refused_without_hashing_it(tmp_path: Path) -> None:
    """With the outside file's true hash and size in the entry, the old code verified and accepted it."""
    models = models_copy(tmp_path)
    secret = secret_file(tmp_path)
    entry = read_manifest(models / "manifest.json").get("autoencoder")
    entry.file = os.path.relpath(secret, models)  # ../../../etc/shadow
    entry.sha256, entry.size_bytes = sha256_file(secret), secret.stat().st_size
    with pytest.raises(ManifestError, match=r"model 'autoencoder': 'file' '\.\./\.\./\.\./etc/shadow' is outside"):
        verify_file(entry, models)
    entry.sha256 = "0" * 64  # a mismatch: the old message carried the file's hash prefix and size
    with pytest.raises(ManifestError) as refused:
        verify_file(entry, models)
    assert leaks(str(refused.value), secret) == []


def test_manifest_file_symlink_leaving_models_folder_is_refused(tmp_path: Path) -> None:
    """A name inside the folder that is a symlink to the outside file: refused on its resolved path."""
    models = models_copy(tmp_path)
    secret = secret_file(tmp_path)
    (models / "autoencoder.tflite").unlink()
    (models / "autoencoder.tflite").symlink_to(secret)
    entry = read_manifest(models / "manifest.json").get("autoencoder")
    entry.sha256, entry.size_bytes = sha256_file(secret), secret.stat().st_size
    with pytest.raises(ManifestError, match=r"model 'autoencoder': 'file' 'autoencoder\.tflite' resolves outside"):
        verify_file(entry, models)
    # a symlink that stays inside the folder is fine
    (models / "autoencoder.tflite").unlink()
    (models / "autoencoder.tflite").symlink_to(models / "autoencoder_float32.tflite")
    entry.sha256 = sha256_file(models / "autoencoder_float32.tflite")
    entry.size_bytes = (models / "autoencoder_float32.tflite").stat().st_size
    assert verify_file(entry, models) == (models / "autoencoder_float32.tflite").resolve()


def test_manifest_file_outside_models_folder_refuses_start(tmp_path: Path) -> None:
    models = models_copy(tmp_path)
    secret = secret_file(tmp_path)
    point_entry_at(models, "../../../etc/shadow", sha_of=secret)
    config = write_config(tmp_path / "agent.toml", 1, '[[sensor]]\nname = "line1"\n', models_dir=models)
    agent = AgentProcess(config)
    assert agent.wait(60) == 2
    out = agent.output()
    assert "model 'autoencoder': 'file' '../../../etc/shadow' is outside the models folder" in out, out
    assert "Traceback" not in out and leaks(out, secret) == []


def test_manifest_file_outside_models_folder_is_refused_on_reload(broker: Broker, tmp_path: Path) -> None:
    """`cmd/reload` after the manifest was edited: refused with the reason; nothing of the file is published."""
    models = models_copy(tmp_path)
    secret = secret_file(tmp_path)
    config = write_config(tmp_path / "agent.toml", broker.port, '[[sensor]]\nname = "line1"\n', models_dir=models)
    collector = Collector(broker.port, [f"{BASE}/#"])
    agent = AgentProcess(config)
    try:
        assert collector.wait_for(lambda: collector.matching("/status")[-1:] == [b"online"], 30), agent.output()
        for n, file in enumerate(["../../../etc/shadow", str(secret)]):
            point_entry_at(models, file, sha_of=secret if n == 0 else None)
            publish(broker.port, f"{BASE}/cmd/reload", [json.dumps({"id": f"r{n}"})])
            assert collector.wait_for(lambda n=n: len(collector.json("/cmd/reload/result")) == n + 1, 30)
            result = collector.json("/cmd/reload/result")[n]
            assert result["ok"] is False and result["request_id"] == f"r{n}"
            assert f"model 'autoencoder': 'file' {file!r} is outside the models folder" in result["error"], result
    finally:
        assert agent.stop() == 0
        collector.close()
    published = b"\n".join(p for _, p, _ in collector.messages).decode()
    assert leaks(published, secret) == [] and leaks(agent.output(), secret) == []
