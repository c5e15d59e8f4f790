"""`python -m edge {run,check,subscribe}`: argument parsing and wiring for the agent, its pre-flight check and
the readable subscriber (`edge.watch`)."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge.argtypes import PORT, number, topic_base
from edge.config import ConfigError, load_config
from edge.models.manifest import ManifestError
from edge.models.runtime import RuntimeUnavailable
from edge.sources.frames import SourceError

log = logging.getLogger("edge")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="agent TOML file (see deploy/agent.example.toml)")
    parser.add_argument("--device-id", dest="device_id")
    parser.add_argument("--host", dest="mqtt.host")
    parser.add_argument("--port", dest="mqtt.port", type=PORT)
    parser.add_argument("--models-dir", dest="models_dir")
    parser.add_argument("--state-dir", dest="state_dir")
    parser.add_argument("--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("device_id", "mqtt.host", "mqtt.port", "models_dir", "state_dir", "log_level")
    return {k: getattr(args, k) for k in keys}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent until SIGINT/SIGTERM")
    add_overrides(run)
    run.add_argument("--duration", type=number(float, 0), help="stop after this many seconds")
    run.add_argument("--until-done", action="store_true", help="stop when every file/stdin input has been processed")
    check = sub.add_parser("check", help="validate config, models, state dir, sources and the broker round trip")
    add_overrides(check)
    check.add_argument("--skip-broker", action="store_true",
                       help="no broker round trip (systemd's pre-start check: the agent starts without a broker)")
    capture = sub.add_parser("capture", help="save PNG crops of a camera region into DATASET/<label>/ for training")
    add_overrides(capture)
    capture.add_argument("--camera", help="the [[camera]] name (default: the only one)")
    capture.add_argument("--region", required=True, help="the [[camera.regions]] name")
    capture.add_argument("--label", required=True, help="the class these crops show (the folder name)")
    # capture's numbers are checked by its own request (edge.pipelines.camera.capture), in words: not twice
    capture.add_argument("--count", type=int, default=100, help="crops to save")
    capture.add_argument("--every", type=float, default=0.5, help="seconds between two crops (a video's own time)")
    capture.add_argument("--start", type=float, default=0.0, help="seconds from the first frame to begin at")
    capture.add_argument("--end", type=float, default=float("inf"), help="seconds from the first frame to stop at")
    capture.add_argument("--out", type=Path, default=Path("dataset"), help="dataset folder (default ./dataset)")
    subscribe = sub.add_parser("subscribe", help="print alerts, forecasts and classes as they arrive")
    subscribe.add_argument("--host", default="localhost")
    subscribe.add_argument("--port", type=PORT, help="default 1883, or 8883 with TLS")
    subscribe.add_argument("--base", type=topic_base, default="edgepipe/+", help="base topic of the device(s) to watch")
    subscribe.add_argument("--username")
    subscribe.add_argument("--password-file", type=Path,
                           help="file whose first line is the password (or set $EDGEPIPE_MQTT_PASSWORD)")
    subscribe.add_argument("--password", help="visible to every user in `ps`: prefer --password-file")
    subscribe.add_argument("--tls", action="store_true", help="TLS with the system's CAs (see --ca-file)")
    subscribe.add_argument("--ca-file", type=Path, help="CA certificate of the broker (implies --tls)")
    subscribe.add_argument("--timeout", type=number(float, 0.1, 3600), default=10.0,
                           help="seconds to wait for the broker's answer")
    subscribe.add_argument("--count", type=number(int, 1), help="exit after this many messages")
    subscribe.add_argument("--json", action="store_true", help="print raw JSON lines instead of text")
    return parser.parse_args(argv)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.agent import Agent

    config = load_config(args.config, overrides(args))
    logging.getLogger().setLevel(config.log_level)
    agent = Agent(config)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        # a stop that takes longer than this is a bug: every thread's stack goes to the log to find it
        faulthandler.dump_traceback_later(20, exit=False)
        agent.stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    agent.run(duration=args.duration, until_inputs_done=args.until_done)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Config, models and runtime; then what a valid config can still get wrong: the state dir, the
    sources and the broker (a publish-and-read-back round trip with the config's credentials)."""
    from edge.agent import load_models
    from edge.models.runtime import load_runtime
    from edge.pipelines.registry import kinds
    from edge.preflight import broker_round_trip, check_sources, check_state_dir

    config = load_config(args.config, overrides(args))
    runtime = load_runtime()
    print(f"config: ok ({args.config or 'defaults'}); device {config.device_id}, base topic {config.base_topic}, "
          f"broker {', '.join(str(b) for b in config.mqtt.endpoints())}")
    print(f"runtime: {runtime.name} {runtime.version}")
    problems = []
    tables = {(section, cfg.name): cfg for section in kinds() for cfg in getattr(config, section)}
    for (section, name), model in load_models(config).items():
        for wrapper in _wrappers(model):
            print_model(f"{section} {name}", wrapper.entry)
        preflight = kinds()[section].preflight  # the sensor's: which alert rule, a burn-in first or resumed
        try:
            for line in preflight(tables[(section, name)], model, Path(config.state_dir)) if preflight else []:
                print(line)
        except ValueError as exc:
            problems.append(f"{section} {name!r}: {exc}")
    problems += [p for p in [check_state_dir(config.state_dir), *check_sources(config)] if p]
    brokers = config.mqtt.endpoints()
    for n, broker in enumerate([] if args.skip_broker else brokers, 1):  # each of mqtt.brokers: a failover target
        which = f"broker {n} of {len(brokers)} ({broker})" if len(brokers) > 1 else "broker"
        problem = broker_round_trip(config, broker=broker)
        if problem:
            problems.append(problem if len(brokers) == 1 else f"{which}: {problem}")
        else:
            print(f"{which}: ok (published on {config.base_topic}/probe and read it back)")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print("check: ok" if not problems else f"check: {len(problems)} problem(s)")
    return 0 if not problems else 2


def _wrappers(model: Any) -> list[Any]:
    """The model wrappers inside what a pipeline kind loads (one wrapper, or a dataclass of them)."""
    if hasattr(model, "entry"):
        return [model]
    values = [v for value in vars(model).values() for v in (value.values() if isinstance(value, dict) else [value])]
    return list({id(w): w for w in values if hasattr(w, "entry")}.values())  # regions may share a model


def print_model(who: str, entry: Any) -> None:
    print(f"{who}: model {entry.name} ({entry.task}, {entry.variant}, {entry.file}, sha256 {entry.short_sha}, "
          f"{entry.size_bytes} bytes) verified")
    for kind, tensors in (("in ", entry.inputs), ("out", entry.outputs)):
        for t in tensors:
            quant = f" scale {t.scale:.6g} zero point {t.zero_point}" if t.quantized else ""
            print(f"    {kind} {t.name}: {t.dtype}{list(t.shape)}{quant}")


def cmd_capture(args: argparse.Namespace) -> int:
    from edge.pipelines.camera.capture import main_capture

    return main_capture(load_config(args.config, overrides(args)).camera, args)


def cmd_subscribe(args: argparse.Namespace) -> int:
    from edge.watch import WatchOptions, watch

    return watch(WatchOptions(host=args.host, port=args.port, base=args.base, username=args.username,
                              password=args.password, password_file=args.password_file, tls=args.tls,
                              ca_file=args.ca_file, count=args.count, json=args.json, timeout=args.timeout))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"run": cmd_run, "check": cmd_check, "subscribe": cmd_subscribe,
                "capture": cmd_capture}[args.command](args)
    except (ConfigError, ManifestError, RuntimeUnavailable, SourceError) as exc:
        log.error("%s", exc)  # once: a second, plain copy on stderr doubled every line in the journal
        return 2
