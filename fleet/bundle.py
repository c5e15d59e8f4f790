"""`python -m fleet keygen` and `python -m fleet bundle`: Ed25519 keys and signed model bundles.

A bundle is a plain tar: `bundle.json` (format, version, the version it replaces, its targets -- devices,
a group or any device --, each file's sha256 and size, the metrics measured on the files, a release summary),
`bundle.sig` (`{"key_id", "signature"}` over the exact bytes of bundle.json), then `manifest.json`
and every file the manifest names. The edge verifies it with `edge/update/bundle.py`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.models.manifest import Manifest, ManifestError, read_manifest, sha256_file, write_manifest
from edge.update.bundle import (
    DESCRIPTOR,
    FORMAT,
    MANIFEST,
    SIGNATURE,
    VERSION_RE,
    BundleRefused,
    check_version_name,
    key_id,
)
from edge.update.targets import Targets, parse_targets


def generate_key(path: Path) -> str:
    """Write a private key (PEM, mode 0600) to `path` and its public key (base64) to `path`.pub; return it."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = public_key_text(private)
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def public_key_text(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"{path}: cannot read a PEM private key ({exc}); "
                         "make one with python -m fleet keygen") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path}: not an Ed25519 private key")
    return key


def export_subset(source: Path, dest: Path, names: tuple[str, ...], threshold: float | None = None) -> Path:
    """A copy of an export holding only the models `names` (a bundle for a device running only those);
    `threshold` overrides the autoencoder's alert threshold (a demo's and a test's deliberately bad update)."""
    manifest = read_manifest(source / MANIFEST)
    manifest.models = {n: manifest.get(n) for n in names}
    if threshold is not None:
        manifest.get("autoencoder").postprocess["threshold"] = threshold
    dest.mkdir(parents=True)
    for entry in manifest.models.values():
        shutil.copy2(source / entry.file, dest / entry.file)
    write_manifest(manifest, dest / MANIFEST)
    return dest


def release_summary(new: Manifest, old: Manifest | None) -> str:
    """One line per model: its short sha, and each numeric metric that changed against `old`."""
    lines = []
    for name, entry in sorted(new.models.items()):
        before = old.models.get(name) if old else None
        changes = [f"{k} {before.metrics[k]:.4g} -> {v:.4g}" for k, v in entry.metrics.items()
                   if before and isinstance(v, (int, float)) and isinstance(before.metrics.get(k), (int, float))
                   and before.metrics[k] != v]
        old_threshold = before.postprocess.get("threshold") if before else None
        if old_threshold is not None and entry.postprocess.get("threshold") != old_threshold:
            changes.insert(0, f"threshold {old_threshold:.4g} -> {entry.postprocess['threshold']:.4g}")
        same = before is not None and before.sha256 == entry.sha256
        state = ", ".join(changes[:4]) or ("unchanged" if same else "new file" if before is None else "new weights")
        lines.append(f"{name} {entry.short_sha}: {state}")
    return "\n".join(lines)


def descriptor(models_dir: Path, version: str, replaces: str | None, targets: Targets | None,
               previous: Manifest | None = None, allow_downgrade: bool = False) -> dict[str, Any]:
    """The signed list. `created` (to the microsecond: two bundles made in one second still have an order)
    orders versions: a device refuses one created before what it runs, unless `allow_downgrade`."""
    manifest = read_manifest(models_dir / MANIFEST)
    names = [MANIFEST, *sorted({e.file for e in manifest.models.values()})]
    files = {n: {"sha256": sha256_file(models_dir / n), "size": (models_dir / n).stat().st_size} for n in names}
    return {"format": FORMAT, "version": version, "replaces": replaces,
            "targets": targets.to_json() if targets is not None else None, "allow_downgrade": allow_downgrade,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
            "files": files, "metrics": {n: e.metrics for n, e in sorted(manifest.models.items())},
            "summary": release_summary(manifest, previous)}


def write_bundle(out: Path, models_dir: Path, key: Ed25519PrivateKey, version: str, replaces: str | None = None,
                 device: str | None = None, previous: Manifest | None = None,
                 describe: dict[str, Any] | None = None, targets: Targets | None = None,
                 allow_downgrade: bool = False) -> dict[str, Any]:
    """Pack `models_dir` (its manifest and the files it names) into a signed bundle at `out`.

    `targets` the devices or group it is for (None: any device trusting the key); `device` is one device
    (the older spelling). `describe` replaces the computed descriptor (tests use it to sign a list that lies).
    """
    if not VERSION_RE.match(version):
        raise SystemExit(f"version {version!r}: use 1-64 letters, digits, '.', '_', '-'")
    try:
        check_version_name(version)
    except BundleRefused as exc:
        raise SystemExit(f"--version: {exc.detail}") from None
    if device is not None:
        if targets is not None:
            raise SystemExit("give the targets or one device, not both")
        targets = Targets(devices=(device,))
    data = describe or descriptor(models_dir, version, replaces, targets, previous, allow_downgrade)
    raw = json.dumps(data, indent=1, sort_keys=True).encode()
    signature = signature_record(raw, key)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, DESCRIPTOR, raw)
        _add(tar, SIGNATURE, signature)
        for name in data["files"]:
            tar.add(models_dir / name, arcname=name, recursive=False)
    os.replace(tmp, out)
    return data


def signature_record(raw: bytes, key: Ed25519PrivateKey) -> bytes:
    """`bundle.sig`: the signing key's id and its signature of the descriptor's exact bytes `raw`."""
    return json.dumps({"key_id": key_id(base64.b64decode(public_key_text(key))),
                       "signature": base64.b64encode(key.sign(raw)).decode()}).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def main(argv: list[str] | None = None) -> int:
    """`python -m fleet bundle --key KEY --version V [--replaces V0] [--to ID|ID,ID|group:NAME] [--models DIR] OUT`"""
    parser = argparse.ArgumentParser(prog="python -m fleet bundle", description=main.__doc__)
    parser.add_argument("out", type=Path, help="the bundle file to write")
    parser.add_argument("--key", type=Path, required=True, help="the Ed25519 private key (python -m fleet keygen)")
    parser.add_argument("--version", required=True, help="this bundle's version (the install folder's name)")
    parser.add_argument("--replaces", help="the version the device must be running (else refused: an old bundle cannot "
                        "be replayed); 'factory' for the models installed with the agent; leave out for any")
    to = parser.add_mutually_exclusive_group()
    to.add_argument("--to", help="the devices that may install it: ID, ID,ID,..., group:NAME (the devices whose "
                    "config lists NAME in `groups`) or all (the default: any device trusting the key)")
    to.add_argument("--device", help="one device that may install it (the same as --to ID)")
    parser.add_argument("--allow-downgrade", action="store_true", help="may replace a version created after this "
                        "one (else a device running a newer version refuses it: `downgrade`)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="manifest.json and its files")
    parser.add_argument("--previous", type=Path, help="the previous manifest.json, to list the metric changes")
    args = parser.parse_args(argv)
    for name, value in (("--version", args.version), ("--replaces", args.replaces)):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
            raise SystemExit(f"{name} {value!r}: expected 1-64 letters, digits, '.', '_' or '-'")
    try:
        targets = parse_targets(args.to if args.to is not None else args.device or "all")
    except ValueError as exc:
        raise SystemExit(f"{'--to' if args.to is not None else '--device'}: {exc}") from None
    try:
        previous = read_manifest(args.previous) if args.previous else None
    except (OSError, ManifestError) as exc:
        raise SystemExit(f"--previous {args.previous}: {exc}") from None
    data = write_bundle(args.out, args.models, load_private_key(args.key), args.version, args.replaces,
                        previous=previous, targets=targets, allow_downgrade=args.allow_downgrade)
    print(f"{args.out}: version {data['version']} for {targets.describe() if targets else 'any device'}, "
          f"{len(data['files'])} files, {args.out.stat().st_size} bytes, sha256 {sha256_file(args.out)[:12]}\n"
          f"{data['summary']}")
    return 0


def keygen(argv: list[str] | None = None) -> int:
    """`python -m fleet keygen KEYFILE`: a new Ed25519 key; prints the public key for `[update] trusted_keys`."""
    parser = argparse.ArgumentParser(prog="python -m fleet keygen", description=keygen.__doc__)
    parser.add_argument("key", type=Path, help="where the private key goes (mode 0600; KEY.pub beside it)")
    args = parser.parse_args(argv)
    if args.key.exists():
        raise SystemExit(f"{args.key} exists; a key is never overwritten (rotate with a new file)")
    print(generate_key(args.key))
    return 0
