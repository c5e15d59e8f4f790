"""A signed model bundle: a tar of `bundle.json` (the descriptor), `bundle.sig` and the files it lists.

Why a descriptor and not a signature over the tar: the tar's bytes depend on the tool that wrote
it (member order, mtimes, padding); the descriptor names every file with its sha256 and size, so
signing its exact bytes signs the whole set, and each file is checked as it is extracted.
Ed25519 (`cryptography`): small keys, deterministic signatures, on piwheels and in Debian.

The descriptor and the signature record are read with `edge.numbers.loads` (digits, finiteness and nesting
bounded): a bundle is input from the network, and a 5,000-deep `metrics` or a NaN in it is a refusal
(`not_a_bundle`, `unsigned`), never a RecursionError or a NaN carried into probation's figures.

Every refusal is a `BundleRefused` with a named `reason` from REASONS, so the agent, the shipper
and the tests speak of the same failure the same way.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.numbers import loads
from edge.update.targets import Targets, targets_from_json

FORMAT = 2  # what `fleet bundle` writes: `targets` (devices, a group or any); format 1 named one `device`
FORMATS = (1, 2)  # what a device installs
DESCRIPTOR, SIGNATURE, MANIFEST = "bundle.json", "bundle.sig", "manifest.json"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FACTORY = "factory"  # the models installed with the agent (a None version): no bundle may take the name
#: every `reason` of a refused bundle on `update/progress` (the enum of schemas/update_progress.json; a test
#: compares the two): each refusal is raised as a BundleRefused, which takes no other reason
REASONS = ("too_big", "no_space", "corrupt_transfer", "truncated", "not_a_bundle", "unsigned", "untrusted_key",
           "bad_signature", "not_a_target", "replaces_mismatch", "downgrade", "version_conflict", "tampered",
           "bad_manifest", "golden_mismatch", "install_failed", "rolled_back")


class BundleRefused(Exception):
    """A bundle that is not installed; `reason` is one of REASONS, the message says what was found."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"{reason!r} is not a refusal reason of update/progress ({', '.join(REASONS)})")
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def key_id(public_raw: bytes) -> str:
    """The short name of a public key (first 16 hex digits of its sha256), written beside each signature."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def parse_public_key(text: str) -> tuple[str, Ed25519PublicKey]:
    """A base64 raw 32-byte Ed25519 public key (what `python -m fleet keygen` prints) -> (id, key)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError(f"not base64: {text[:20]!r}") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return key_id(raw), Ed25519PublicKey.from_public_bytes(raw)


def parse_trusted(text: str) -> dict[str, Ed25519PublicKey]:
    """`[update] trusted_keys`: keys separated by spaces or commas (several during a rotation)."""
    return dict(parse_public_key(item) for item in re.split(r"[\s,]+", text) if item)


@dataclass(frozen=True)
class Descriptor:
    version: str
    replaces: str | None
    targets: Targets | None  # None: any device that trusts the key
    created: str
    files: dict[str, dict[str, Any]]  # name -> {"sha256", "size"}
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    allow_downgrade: bool = False  # signed `--allow-downgrade`: may replace a version created later

    @property
    def created_at(self) -> _dt.datetime | None:
        return created_time(self.created)

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, dict) or data.get("format") not in FORMATS or isinstance(data.get("format"), bool):
            raise BundleRefused("not_a_bundle", f"{DESCRIPTOR}: expected an object with format {FORMATS}")
        version = data.get("version")
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise BundleRefused("not_a_bundle", f"version {version!r}: expected 1-64 letters, digits, '.', '_', '-'")
        check_version_name(version)
        files = data.get("files")
        if not isinstance(files, dict) or MANIFEST not in files:
            raise BundleRefused("not_a_bundle", f"{DESCRIPTOR}: 'files' must list {MANIFEST} and the model files")
        for name, info in files.items():
            check_member_name(name)
            if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or \
                    not isinstance(info.get("size"), int) or info["size"] < 0:
                raise BundleRefused("not_a_bundle", f"{DESCRIPTOR}: file {name!r} needs 'sha256' and 'size'")
        replaces = data.get("replaces")
        return cls(version, replaces if isinstance(replaces, str) else None, _targets(data),
                   str(data.get("created", "")), files,
                   data.get("metrics") if isinstance(data.get("metrics"), dict) else {}, str(data.get("summary", "")),
                   data.get("allow_downgrade") is True)


def check_version_name(version: str) -> str:
    """A bundle's version may not be `factory` (any case): the name of the models installed with the agent, which
    `--replaces factory`, the pointer and `model/...` messages use; a bundle so named would pass for them."""
    if version.lower() == FACTORY:
        raise BundleRefused("not_a_bundle", f"version {version!r} is reserved for the models installed with the "
                            "agent; give the bundle another version")
    return version


def created_time(text: str) -> _dt.datetime | None:
    """A descriptor's `created` (ISO 8601; no zone: UTC) as a time, None when it is not one."""
    try:
        when = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


def _targets(data: dict[str, Any]) -> Targets | None:
    """Format 2's `targets`; format 1's one `device` as a list of one (empty or absent: any device)."""
    device = data.get("device")
    try:
        if data["format"] == 1:
            return Targets(devices=(device,)) if isinstance(device, str) and device else None
        if device is not None:
            raise ValueError("format 2 names its devices in 'targets', not 'device'")
        return targets_from_json(data.get("targets"))
    except ValueError as exc:
        raise BundleRefused("not_a_bundle", f"{DESCRIPTOR}: {exc}") from None


def check_member_name(name: Any) -> str:
    """A file of the bundle is a plain name: no folders, no '..', nothing that leaves the install folder."""
    if not isinstance(name, str) or not name or name in (DESCRIPTOR, SIGNATURE) or \
            PurePosixPath(name).name != name or name.startswith(".") or "\\" in name or "\x00" in name:
        raise BundleRefused("not_a_bundle", f"file name {name!r}: expected a plain file name")
    return name


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    members = {}
    for info in tar.getmembers():
        if not info.isfile():
            raise BundleRefused("not_a_bundle", f"member {info.name!r} is not a regular file")
        members[info.name] = info
    return members


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, limit: int = 1 << 20) -> bytes:
    info = members.get(name)
    if info is None:
        raise BundleRefused("unsigned" if name == SIGNATURE else "not_a_bundle", f"no {name} in the bundle")
    if info.size > limit:
        raise BundleRefused("not_a_bundle", f"{name} is {info.size} bytes (at most {limit})")
    fh = tar.extractfile(info)
    assert fh is not None  # a regular file
    return fh.read()


def check_signature(descriptor_raw: bytes, signature_raw: bytes, trusted: dict[str, Ed25519PublicKey]) -> str:
    """The id of the trusted key that signed `descriptor_raw`; BundleRefused naming why not."""
    try:
        sig = loads(signature_raw)
        signer, signature = sig["key_id"], base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        why = f"no {exc}" if isinstance(exc, KeyError) else str(exc)[:200]
        raise BundleRefused("unsigned", f"{SIGNATURE} is not a signature record ({why})") from None
    if not trusted:
        raise BundleRefused("untrusted_key", "no [update] trusted_keys configured: every bundle is refused")
    key = trusted.get(signer) if isinstance(signer, str) else None
    if key is None:
        raise BundleRefused("untrusted_key", f"signed by key {str(signer)[:16]!r}, trusted: {sorted(trusted)}")
    try:
        key.verify(signature, descriptor_raw)
    except InvalidSignature:
        raise BundleRefused("bad_signature", f"the signature by key {signer} does not match {DESCRIPTOR}") from None
    return signer


def read_descriptor(path: Path) -> Descriptor:
    """The descriptor of a bundle file, signature NOT checked: for the operator's tools (a rollout reads whom a
    bundle is for and its version before shipping it); a device checks with `open_bundle`. BundleRefused."""
    try:
        with tarfile.open(path, "r:") as tar:
            raw = _read(tar, _members(tar), DESCRIPTOR)
        return Descriptor.from_json(loads(raw))
    except (OSError, tarfile.TarError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise BundleRefused("not_a_bundle", f"{path}: {exc}") from None


def open_bundle(path: Path, trusted: dict[str, Ed25519PublicKey], device: str, groups: tuple[str, ...] = ()
                ) -> Descriptor:
    """Read and check the descriptor of a bundle file: signature, targets (this `device`, in its `groups`), file
    list. No file is written."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = _members(tar)
            descriptor_raw = _read(tar, members, DESCRIPTOR)
            check_signature(descriptor_raw, _read(tar, members, SIGNATURE), trusted)
    except (tarfile.ReadError, EOFError) as exc:
        raise BundleRefused("truncated" if "unexpected end" in str(exc) or isinstance(exc, EOFError)
                            else "not_a_bundle", f"{path.name}: {exc}") from None
    try:
        descriptor = Descriptor.from_json(loads(descriptor_raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleRefused("not_a_bundle", f"{DESCRIPTOR}: {exc}") from None
    if descriptor.targets is not None and not descriptor.targets.admits(device, groups):
        raise BundleRefused("not_a_target", f"bundle {descriptor.version} is for {descriptor.targets.describe()}; "
                            f"this is {device!r} in groups {list(groups)}")
    extra = set(members) - set(descriptor.files) - {DESCRIPTOR, SIGNATURE}
    if extra:
        raise BundleRefused("tampered", f"file(s) not in the signed list: {sorted(extra)}")
    return descriptor


def extract(path: Path, descriptor: Descriptor, dest: Path) -> None:
    """Write every listed file into `dest` (an empty folder), checking size and sha256 as it streams.

    Files are fsynced, so a folder renamed into place after this holds what was checked.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            members = _members(tar)
            for name, info in descriptor.files.items():
                _extract_one(tar, members, name, info, dest / name)
    except (tarfile.ReadError, EOFError) as exc:
        raise BundleRefused("truncated", f"{path.name}: {exc}") from None


def _extract_one(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, info: dict[str, Any],
                 target: Path) -> None:
    member = members.get(name)
    if member is None:
        raise BundleRefused("tampered", f"{name} is listed in {DESCRIPTOR} but not in the bundle")
    if member.size != info["size"]:
        raise BundleRefused("tampered", f"{name}: {member.size} bytes, the signed list says {info['size']}")
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != info["sha256"]:
        raise BundleRefused("tampered", f"{name}: sha256 {digest.hexdigest()[:12]}..., the signed list says "
                            f"{info['sha256'][:12]}...")
    target.chmod(0o644)
