"""The agent's updater: chunks in, a verified version installed and swapped in, probation, promote or roll back.

Runs on a thread of its own ("update"): chunks are queued by the network thread and acknowledged
once written; verification, install, the swap (`Agent.reload`, each pipeline between two inputs)
and the probation checks happen here. `cmd/rollback` and `cmd/promote` come from the command
thread; one lock keeps the two from changing the pointer at once. Old models keep serving until
the swap; any refusal leaves them serving, and says why on `update/progress`.
"""

from __future__ import annotations

import errno
import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.models.manifest import ManifestError, read_manifest
from edge.mqtt.messages import Message, Topics
from edge.update import messages
from edge.update.bundle import BundleRefused, Descriptor, created_time, extract, open_bundle, parse_trusted
from edge.update.chunks import parse_chunk
from edge.update.probation import Probation, baselines
from edge.update.receiver import Assembly, ranges, start_assembly
from edge.update.store import FACTORY, ModelStore, crash_point

log = logging.getLogger(__name__)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
PROGRESS_EVERY = 0.5  # seconds between two `receiving` progress messages


class Updater:
    def __init__(self, config: Any, topics: Topics, send: Callable[[Message], Any],
                 pipelines: Callable[[], list[Any]], reload: Callable[..., dict[str, Any]],
                 verify: Callable[[Path], tuple[Any, Any]], report: Callable[[str, str], None]) -> None:
        self.cfg, self.device, self.topics, self.send = config.update, config.device_id, topics, send
        self.pipelines, self.reload, self.verify, self.report = pipelines, reload, verify, report
        self.store = ModelStore(config.state_dir, config.models_dir)
        self.folder = Path(config.state_dir) / "updates"
        self.trusted = parse_trusted(self.cfg.trusted_keys)
        self.groups = tuple(config.groups)  # a bundle for `group:NAME` installs when NAME is one
        self.queue: queue.Queue[tuple[bytes, Callable[[], None] | None] | None] = queue.Queue(maxsize=256)
        self.thread = threading.Thread(target=self._work, name="update", daemon=True)
        self.lock = threading.Lock()
        self.assembly: Assembly | None = None
        self.probation: Probation | None = None
        self.summary = ""
        self.verdicts: dict[str, tuple[str, int]] = {}  # bundle sha -> (version, chunks) it installed (this run)
        self.last_progress, self.progress_due = 0.0, False

    # --- wiring ---------------------------------------------------------------------------
    def attach(self, subscribe: Callable[..., None], commands: Any) -> None:
        subscribe(messages.chunk_topic(self.topics), self.on_chunk)
        commands.register("rollback", lambda _body: self.rollback("commanded (cmd/rollback)"))
        commands.register("promote", lambda _body: self.promote("commanded (cmd/promote)"))

    def discovery(self, prefix: str, device: str) -> list[Message]:
        """Home Assistant's `update` entity and rollback button."""
        return messages.discovery(prefix, device, self.topics)

    def start(self) -> None:
        self.store.clean()
        self.assembly = Assembly.load(self.folder) if self.folder.is_dir() else None
        if self.store.read_pointer().state == "probation":  # the probation of a version that was on when we stopped
            self.probation = Probation.begin(self.cfg, list(self.pipelines()), baselines(list(self.pipelines())))
        self.thread.start()
        self.publish_states()
        if self.assembly is not None and self.assembly.complete:  # stopped between the last chunk and the install
            self.queue.put((b"", None))

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def on_chunk(self, topic: str, payload: bytes, ack: Callable[[], None] | None = None) -> None:
        """The network thread's handler: queued, acknowledged once written (a full queue: the shipper resends)."""
        try:
            self.queue.put_nowait((payload, ack))
        except queue.Full:
            if ack is not None:
                ack()

    # --- the update thread -----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                item = ()
            if item is None:
                return
            try:
                if item and item[0]:
                    self._chunk(item[0])
                elif item and self.assembly is not None and self.assembly.complete:
                    self._finish(self.assembly)
                self._tick()
            except OSError as exc:  # a full state dir while promoting or rolling back: retried next tick
                self.report("update", f"cannot write the model pointer ({exc}); retrying every second")
            except Exception:  # noqa: BLE001 - the update thread must outlive any one chunk
                log.exception("update: failed")
            finally:
                if item and item[1] is not None:
                    item[1]()

    def _chunk(self, payload: bytes) -> None:
        try:
            chunk = parse_chunk(payload)
        except ValueError as exc:
            self.report("update", f"chunk refused: {exc}")
            return
        if self._still_installed(chunk.bundle):  # a late duplicate of the bundle in use: say so again, store nothing
            return
        try:
            if self.assembly is None or not self.assembly.matches(chunk):
                self.assembly = start_assembly(self.folder, chunk, int(self.cfg.max_bundle_mb * 1024 * 1024))
            try:
                fresh = self.assembly.write(chunk)
            except OSError as exc:
                raise BundleRefused("no_space" if exc.errno == errno.ENOSPC else "install_failed",
                                    f"writing chunk {chunk.index}: {exc}") from None
            if self.assembly.complete and fresh:
                self._finish(self.assembly)
            else:
                self.progress_due = True
        except BundleRefused as exc:
            self._refused(chunk.bundle, exc)

    def _still_installed(self, bundle: str) -> bool:
        """Answer `installed` again for a bundle judged this run, if and only if the device runs what it installed
        now (its version, installed from this very bundle). A verdict describes the present: a bundle of a
        version since replaced or rolled back is judged again (and a replayed old one refused)."""
        verdict = self.verdicts.get(bundle)
        if verdict is None:
            return False
        version, count = verdict
        if self.store.read_pointer().version != version or self.store.origin(version).get("bundle") != bundle:
            del self.verdicts[bundle]
            return False
        self.send(messages.progress(self.topics, self.device, bundle, "installed", count=count,
                                    have=[[0, count - 1]], version=version, detail="already installed"))
        return True

    def _finish(self, assembly: Assembly) -> None:
        self._progress("verifying")
        try:
            self._install(assembly)
        except BundleRefused as exc:
            self._refused(assembly.bundle, exc)
        except Exception as exc:  # noqa: BLE001 - an install failing in an unforeseen way still gets a verdict
            log.exception("update: install of bundle %s failed", assembly.bundle[:12])
            self._refused(assembly.bundle, BundleRefused("install_failed", f"{type(exc).__name__}: {exc}"))

    def _install(self, assembly: Assembly) -> None:
        crash_point("after_receive")
        descriptor = open_bundle(assembly.check(), self.trusted, self.device, self.groups)
        if self._judge(assembly.bundle, descriptor) == "already installed":
            assembly.discard()
            self._done(assembly, descriptor, "installed", "already installed")
            return
        models, manifest = self._unpack(assembly, descriptor)  # loaded and golden-checked once, here
        assembly.discard()  # its space is needed more by the pointer than by a bundle already unpacked
        before = baselines(list(self.pipelines()))
        with self.lock:
            try:
                self.store.switch(descriptor.version, "probation", f"installed from bundle {assembly.bundle[:12]}")
            except OSError as exc:
                self.store.clean()
                raise BundleRefused("no_space" if exc.errno == errno.ENOSPC else "install_failed",
                                    f"switching to {descriptor.version}: {exc}") from None
            crash_point("after_pointer")
            try:
                self.reload(models, manifest)  # the verified interpreters themselves: no second load
            except Exception as exc:  # noqa: BLE001 - whatever stopped the swap, the pointer must go back
                self.store.roll_back(f"install_failed: {exc}")
                self.reload()
                raise BundleRefused("install_failed", f"the swap failed ({exc}); the previous models serve") from None
            crash_point("after_swap")
            self.probation = Probation.begin(self.cfg, list(self.pipelines()), before)
        self.summary = descriptor.summary
        self._done(assembly, descriptor, "installed", f"on probation for {self.cfg.probation_s:g} s")
        self.publish_states()
        self.store.clean()  # versions neither current nor previous: the SD card keeps two sets, not all

    def _judge(self, bundle: str, descriptor: Descriptor) -> str:
        """Whether this version may replace the one running: "install", "already installed", or BundleRefused
        (`replaces_mismatch`: not the version it was made to replace; `downgrade`: created before the one running,
        without `--allow-downgrade`; `version_conflict`: the running version's name from another bundle)."""
        current = self.store.read_pointer().version
        running, origin = current or FACTORY, self.store.origin(current)
        if descriptor.version == current:  # this very bundle runs (also after a restart): say so, whatever it replaced
            if origin.get("bundle", bundle) == bundle:  # a folder installed before origins were kept: as before
                return "already installed"
            raise BundleRefused("version_conflict", f"version {current!r} runs here, installed from another bundle "
                                f"({origin['bundle'][:12]}); give this one a version of its own")
        if descriptor.replaces is not None and descriptor.replaces != running:  # a signed old bundle replayed
            raise BundleRefused("replaces_mismatch", f"bundle {descriptor.version} replaces {descriptor.replaces!r}, "
                                f"this device runs {running!r} (bundle it with --replaces {running}, or none)")
        ours, theirs = descriptor.created_at, created_time(str(origin.get("created", "")))
        if theirs is not None and not descriptor.allow_downgrade and (ours is None or ours < theirs):
            made = descriptor.created or "at no stated time"
            raise BundleRefused("downgrade", f"bundle {descriptor.version} was created {made}, before {running!r} "
                                f"({origin['created']}), which runs here; make it with --allow-downgrade to go back")
        return "install"

    def _unpack(self, assembly: Assembly, descriptor: Descriptor) -> tuple[Any, Any]:
        """Extract into a staging folder, verify it by loading it (every model and its golden vectors), rename
        it into place; the models so loaded and their manifest, which the swap takes over."""
        staging = self.store.staging(descriptor.version)
        try:
            extract(assembly.path, descriptor, staging)
            crash_point("after_extract")
            try:
                loaded = self.verify(staging)
            except ManifestError as exc:
                raise BundleRefused("golden_mismatch" if "golden_mismatch" in str(exc) else "bad_manifest",
                                    str(exc)) from None
            crash_point("after_verify")
            self.store.write_origin(staging, {"bundle": assembly.bundle, "version": descriptor.version,
                                              "created": descriptor.created, "replaces": descriptor.replaces})
            self.store.commit(staging, descriptor.version)
        except OSError as exc:
            raise BundleRefused("no_space" if exc.errno == errno.ENOSPC else "install_failed", str(exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        crash_point("after_rename")
        return loaded

    def _refused(self, bundle: str, exc: BundleRefused) -> None:
        log.warning("update: bundle %s refused: %s", bundle[:12], exc)
        if self.assembly is not None and self.assembly.bundle == bundle:
            self.assembly.discard()
            self.assembly = None
        self.report("update", f"bundle {bundle[:12]} refused: {exc}")
        self.send(messages.progress(self.topics, self.device, bundle, "refused", reason=exc.reason, detail=exc.detail))

    def _done(self, assembly: Assembly, descriptor: Descriptor, state: str, detail: str) -> None:
        self.assembly = None
        message = messages.progress(self.topics, self.device, assembly.bundle, state, count=assembly.count,
                                    have=[[0, assembly.count - 1]], version=descriptor.version, detail=detail)
        if len(self.verdicts) >= 64:
            self.verdicts.clear()
        self.verdicts[assembly.bundle] = (descriptor.version, assembly.count)  # a refused one is judged again
        self.send(message)

    def _progress(self, state: str) -> None:
        a = self.assembly
        if a is not None:
            self.send(messages.progress(self.topics, self.device, a.bundle, state, have=ranges(a.have), count=a.count))
        self.last_progress, self.progress_due = time.monotonic(), False

    def _tick(self) -> None:
        if self.progress_due and time.monotonic() - self.last_progress >= PROGRESS_EVERY:
            self._progress("receiving")
        probation = self.probation
        if probation is None:
            return
        reason = probation.breach()
        if reason is None and probation.over:
            reason = probation.golden_check()
            if reason is None:
                self.promote(f"probation of {self.cfg.probation_s:g} s passed")
                return
        if reason is not None:
            self.rollback(reason)

    # --- promote / roll back (also commands) --------------------------------------------
    def promote(self, why: str) -> dict[str, Any]:
        with self.lock:
            pointer = self.store.read_pointer()
            if pointer.state != "probation":
                raise ValueError(f"nothing on probation (version {pointer.version or FACTORY} is {pointer.state})")
            self.store.set_state("active", why)
            self.probation = None
        log.info("update: version %s promoted: %s", pointer.version, why)
        self.publish_states()
        return {"version": pointer.version, "state": "active"}

    def rollback(self, why: str) -> dict[str, Any]:
        """Back to the previous version (kept on disk), and say why; ValueError when there is none."""
        with self.lock:
            pointer = self.store.read_pointer()
            if pointer.version is None or pointer.state == "rolled_back":
                raise ValueError(f"nothing to roll back to (version {pointer.version or FACTORY} is {pointer.state})")
            self.store.roll_back(why)
            crash_point("after_rollback_pointer")
            self.reload()
            self.probation = None
            self._forget_verdicts(pointer.version, why)
        self.report("update", f"version {pointer.version} rolled back to {pointer.previous or FACTORY}: {why}")
        self.publish_states()
        return {"version": pointer.previous or FACTORY, "rolled_back": pointer.version, "reason": why}

    def _forget_verdicts(self, version: str | None, why: str) -> None:
        """The retained `installed` of a bundle rolled back is no longer true: say `refused`, `rolled_back`
        (a shipper would otherwise take it as done), and judge the bundle afresh if it is shipped again. The
        bundle is known from the version's folder too: the retained verdict may come from an earlier run."""
        refused = BundleRefused("rolled_back", why)
        bundles = {bundle for bundle, (installed, _count) in self.verdicts.items() if installed == version}
        origin = self.store.origin(version).get("bundle")
        for bundle in bundles | ({origin} if isinstance(origin, str) and SHA256_RE.fullmatch(origin) else set()):
            self.verdicts.pop(bundle, None)
            self.send(messages.progress(self.topics, self.device, bundle, "refused", reason=refused.reason,
                                        detail=refused.detail, version=version))

    def publish_states(self) -> None:
        """Retained `model/<kind>/<name>` per pipeline and `model/update` for Home Assistant."""
        pointer = self.store.read_pointer()
        try:
            manifest = read_manifest(self.store.active_dir() / "manifest.json")
        except ManifestError:
            manifest = None
        for p in self.pipelines():
            name = p.latency().get("model")
            entry = manifest.models.get(name) if manifest is not None else None
            self.send(messages.model_state(self.topics, self.device, p.kind, p.name, {
                "model": name, "version": pointer.version or FACTORY, "sha256": entry.sha256 if entry else None,
                "state": pointer.state, "since": pointer.since or None, "reason": pointer.reason or None,
                "previous": pointer.previous}))
        installed = pointer.version or FACTORY
        latest = (pointer.previous or FACTORY) if pointer.state == "rolled_back" else installed
        summary = f"rolled back: {pointer.reason}" if pointer.state == "rolled_back" else self.summary or pointer.reason
        self.send(messages.update_state(self.topics, installed, latest, summary, self.assembly is not None))
