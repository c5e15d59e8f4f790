"""`python -m tools.bench` (`make bench`): speed, size and memory of the committed models and of the agent.

Runs where only the edge extra is installed (a Pi): per-model invoke latency (p50/p95/p99 over at
least 1,000 invokes after warm-up, one thread and all cores), file size, multiply-accumulates and
the share of the machine's measured peak they imply, the task metric of that same file (from the
manifest), and the agent end to end through a real broker on loopback. Prints markdown and writes
it, with a description of the machine, to docs/benchmarks.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.manifest import ModelEntry, read_manifest
from edge.models.runtime import TFLiteModel, load_runtime, quantize
from edge.system import resident_mb
from tools.broker import Mosquitto
from tools.classtap import ClassTap
from training.tflite import count_macs

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = ("accuracy", "test_rmse", "detection_rate_wrong", "mean_abs_diff_vs_keras")


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    runtime = load_runtime()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "os": platform.platform(), "python": platform.python_version(),
            "runtime": f"{runtime.name} {runtime.version}", "numpy": np.__version__}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms)
    return {f"p{p}": float(np.percentile(values, p)) for p in (50, 95, 99)}


def time_invokes(model: TFLiteModel, feeds: dict[str, np.ndarray], count: int, warmup: int = 100) -> list[float]:
    """Wall time of `invoke()` alone, inputs already set: what the model costs, not our Python."""
    for name, value in feeds.items():
        model.interpreter.set_tensor(model._in_index[name], value)
    for _ in range(warmup):
        model.interpreter.invoke()
    out = []
    for _ in range(count):
        started = time.perf_counter()
        model.interpreter.invoke()
        out.append((time.perf_counter() - started) * 1000)
    return out


def raw_feeds(model: TFLiteModel, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: quantize(rng.uniform(0, 1, spec.shape).astype(np.float32), spec)
            for name, spec in model.inputs.items()}


PEAK_SNIPPET = """
import time, numpy as np
a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
for _ in range(3): a @ a
t = time.perf_counter()
for _ in range(20): a @ a
print(512 ** 3 * 20 / (time.perf_counter() - t))
"""


def peak_macs_per_second(threads: int) -> float:
    """A float32 512x512 matrix product (numpy's BLAS, `threads` threads) as the practical peak."""
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", PEAK_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


BATCH = 32


def batch_throughput(entry: ModelEntry, models_dir: Path, count: int) -> float | None:
    """Samples/s with the inputs resized to a batch of BATCH (1 thread), or None where the graph
    is fixed to batch 1 (the CNN's flatten is a RESHAPE to a constant shape; the LSTM step is
    one series' state), which the runtime reports when the resized graph is prepared."""
    model = TFLiteModel.from_entry(entry, models_dir, num_threads=1)
    interpreter = model.interpreter
    try:
        for spec in model.inputs.values():
            interpreter.resize_tensor_input(model._in_index[spec.name], [BATCH, *spec.shape[1:]])
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return None
    rng = np.random.default_rng(0)
    feeds = {name: quantize(rng.uniform(0, 1, (BATCH, *spec.shape[1:])).astype(np.float32), spec)
             for name, spec in model.inputs.items()}
    p50 = percentiles(time_invokes(model, feeds, max(10, count // 10), warmup=10))["p50"]
    return BATCH / (p50 / 1000)


def bench_model(entry: ModelEntry, models_dir: Path, count: int) -> dict[str, Any]:
    row: dict[str, Any] = {"name": entry.name, "variant": entry.variant, "bytes": entry.size_bytes}
    for threads in (1, os.cpu_count() or 1):
        model = TFLiteModel.from_entry(entry, models_dir, num_threads=threads)
        row[f"threads_{threads}"] = percentiles(time_invokes(model, raw_feeds(model), count))
    row["batch_per_s"] = batch_throughput(entry, models_dir, count)
    row["macs"] = count_macs(model.interpreter)
    row["metric"] = next(((k, entry.metrics[k]) for k in METRIC_KEYS if k in entry.metrics), None)
    return row


# --- the agent end to end ----------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    rss = resident_mb(pid)
    return float("nan") if rss is None else rss


def _wait_until_quiet(received: list, since: float, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Until nothing new arrived for `quiet` seconds (after the first arrival), at most `limit` s."""
    while time.perf_counter() - since < limit:
        last = received[-1][0] if received else since
        if received and time.perf_counter() - last > quiet:
            return
        time.sleep(0.05)


def _replay_file(path: Path, frames: int) -> Path:
    """About `frames` frames for a replay source: the shipped sample frames, repeated."""
    data = np.load(ROOT / "data" / "sample-frames.npz")
    np.savez(path, frames=np.concatenate([data["frames"]] * max(1, frames // len(data["frames"]))))
    return path


def bench_camera_in_process(models_dir: Path, frames: int) -> float:
    """Frames/s of the agent's camera code (replay source, preprocess, CNN, top-k, JSON message) with
    the message dropped instead of published: the agent's own cost per frame, without MQTT."""
    from edge.models.classifier import Classifier
    from edge.mqtt.messages import Topics
    from edge.pipelines.camera.config import CameraConfig
    from edge.pipelines.camera.pipeline import CameraPipeline
    from edge.pipelines.publisher import Publisher
    from edge.sources.frames import ReplaySource

    entry = read_manifest(models_dir / "manifest.json").get("cnn")
    classifier = Classifier(entry, TFLiteModel.from_entry(entry, models_dir, num_threads=1))
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-") as tmp:
        path = _replay_file(Path(tmp) / "frames.npz", frames)
        drop = Publisher(Topics("bench"), "bench", lambda message: None)
        pipeline = CameraPipeline(CameraConfig("cam0", f"replay:{path}", fps=0, drop_stale=False),
                                  ReplaySource(str(path)), classifier, drop)
        started = time.perf_counter()
        pipeline.start()
        pipeline.finished.wait()
        elapsed = time.perf_counter() - started
    return pipeline.counters.processed / elapsed


def _agent_frame_rate(recorded: list[tuple[float, bytes]]) -> float:
    """The agent's own rate: from the time stamps it put into its first and last class message."""
    if len(recorded) < 2:
        return float("nan")
    made = [datetime.datetime.fromisoformat(json.loads(recorded[i][1])["ts"]) for i in (0, -1)]
    return (len(recorded) - 1) / (made[1] - made[0]).total_seconds()


def _camera_agent_config(work: Path, models_dir: Path, port: int, frames: int, top: str = "", more: str = "") -> Path:
    """An agent config in `work` whose camera replays about `frames` frames as fast as it can (device `bench`);
    `top` adds top-level keys, `more` further pipelines."""
    source = _replay_file(work / "frames.npz", frames)
    config = work / "agent.toml"
    config.write_text(
        f'device_id = "bench"\nmodels_dir = "{models_dir}"\nstate_dir = "{work / "state"}"\n{top}'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndiscovery = false\n'
        f'[[camera]]\nname = "cam0"\nsource = "replay:{source}"\nfps = 0\ndrop_stale = false\n{more}')
    return config


def bench_camera_again(models_dir: Path, frames: int, runs: int) -> list[float]:
    """The camera pipeline's rate through the agent `runs` more times, each with a fresh agent.

    One run on 2 shared cores varies by several percent (where the scheduler puts the model's
    thread, the publishing thread, the broker and the subscriber), so the table gives the
    median and the range of all runs.
    """
    rates = []
    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", extra_conf="set_tcp_nodelay true\n").start()
        port = broker.port
        config = _camera_agent_config(work, models_dir, port, frames)
        try:
            for _ in range(runs):
                tap = ClassTap(port, "edgepipe/bench/vision/+/class")
                agent = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    tap.wait_until_quiet()
                    rates.append(_agent_frame_rate(tap.arrivals()))
                finally:
                    agent.terminate()
                    agent.wait(30)
                    tap.stop()
        finally:
            broker.stop()
    return rates


def bench_agent(models_dir: Path, frames: int, readings: int) -> dict[str, Any]:
    """Camera frames/s, readings/s (input topic -> anomaly topic), forecasts/s, publish->alert latency,
    resident memory and start-up time, with the agent in its own process and a mosquitto on loopback."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    with tempfile.TemporaryDirectory(prefix="edgepipe-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", extra_conf="set_tcp_nodelay true\n").start()
        port = broker.port
        config = _camera_agent_config(work, models_dir, port, frames, top="stats_interval = 1\n",
                                      more='[[sensor]]\nname = "s"\n[[series]]\nname = "a"\n')
        arrivals: dict[str, list[tuple[float, Any]]] = {"anomaly": [], "forecast": [], "status": [], "stats": []}
        lock = threading.Lock()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            now = time.perf_counter()
            kind = "status" if msg.topic.endswith("/status") else msg.topic.rsplit("/", 1)[-1] \
                if not msg.topic.startswith("edgepipe/bench/forecast/") else "forecast"
            if kind in arrivals:
                body = json.loads(msg.payload) if kind != "status" else {"s": msg.payload.decode()}
                with lock:
                    arrivals[kind].append((now, body))

        sub = paho.Client(CallbackAPIVersion.VERSION2)
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        for topic in ("status", "stats", "sensors/+/anomaly", "forecast/+"):
            sub.subscribe(f"edgepipe/bench/{topic}", qos=1)
        sub.loop_start()
        tap = ClassTap(port, "edgepipe/bench/vision/+/class")
        time.sleep(0.3)
        started = time.perf_counter()
        agent = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not any(b["s"] == "online" for _, b in arrivals["status"]) and time.perf_counter() - started < 60:
                time.sleep(0.01)
            startup = arrivals["status"][0][0] - started if arrivals["status"] else float("nan")
            tap.wait_until_quiet()
            recorded = tap.arrivals()
            classes = [t for t, _ in recorded]
            fps = (len(classes) - 1) / (classes[-1] - classes[0]) if len(classes) > 1 else float("nan")
            agent_fps = _agent_frame_rate(recorded)
            rss_after_frames = _rss_mb(agent.pid)
            time.sleep(1.5)  # one more `stats`: its cnn latency window holds the last 1,000 frames' invokes
            in_agent = arrivals["stats"][-1][1]["latency"].get("camera/cam0", {}) if arrivals["stats"] else {}
            pub = paho.Client(CallbackAPIVersion.VERSION2)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            rng = np.random.default_rng(0)

            def wrong_reading(i: int) -> str:  # a reading off the normal line: every one is scored
                x = float(rng.uniform(0.5, 1.0))
                return json.dumps({"ts": i, "values": [x, 1.5 * x - 1]})

            t0 = time.perf_counter()  # throughput: a burst, as fast as the broker takes it
            for i in range(readings):
                pub.publish("edgepipe/bench/sensors/s/reading", wrong_reading(i))
            _wait_until_quiet(arrivals["anomaly"], t0)
            alerts = list(arrivals["anomaly"])
            readings_per_s = len(alerts) / (alerts[-1][0] - t0) if alerts else float("nan")
            sent: dict[int, float] = {}  # latency: paced at 100 readings/s, so nothing queues
            for i in range(readings, readings + 200):
                sent[i] = time.perf_counter()
                pub.publish("edgepipe/bench/sensors/s/reading", wrong_reading(i))
                time.sleep(0.01)
            _wait_until_quiet(arrivals["anomaly"], time.perf_counter())
            latencies = [(t - sent[b["reading_ts"]]) * 1000 for t, b in arrivals["anomaly"]
                         if b.get("reading_ts") in sent]
            t1 = time.perf_counter()
            for i in range(readings):
                pub.publish("edgepipe/bench/series/a/reading", str(200.0 + 50 * np.sin(i / 6) + i * 0.1))
            _wait_until_quiet(arrivals["forecast"], t1)
            forecasts = arrivals["forecast"]
            forecasts_per_s = len(forecasts) / (forecasts[-1][0] - t1) if forecasts else float("nan")
            rss_end = _rss_mb(agent.pid)
            pub.disconnect()
            pub.loop_stop()
        finally:
            agent.terminate()
            agent.wait(30)
            tap.stop()
            sub.disconnect()
            sub.loop_stop()
            broker.stop()
    return {"frames_per_s": fps, "agent_frames_per_s": agent_fps, "frames_classified": len(classes),
            "readings_per_s": readings_per_s,
            "alerts": len(alerts), "latency_ms": percentiles(latencies) if latencies else {},
            "forecasts_per_s": forecasts_per_s, "startup_s": startup, "rss_mb_after_frames": rss_after_frames,
            "rss_mb_end": rss_end, "cnn_in_agent_p50_ms": in_agent.get("p50_ms", float("nan"))}


def render(info: dict[str, str], rows: list[dict[str, Any]], agent: dict[str, Any] | None,
           peak: dict[int, float]) -> str:
    cores = int(info["cores"])
    lines = ["## Machine", "", *(f"- {k}: {v}" for k, v in info.items()),
             f"- measured peak (float32 512x512 matmul, numpy): {peak[cores] / 1e9:.1f} G MAC/s", "",
             "## Models: one invoke (ms), after 100 warm-up invokes", "",
             f"| model | variant | file | p50 / p95 / p99, 1 thread | p50 / p95 / p99, {cores} threads | "
             f"batch of {BATCH}, 1 thread (samples/s; batch 1 in brackets) | MACs | "
             "MAC/s as a share of the float32 peak (1 thread) | metric of this file |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        one, many = r["threads_1"], r[f"threads_{cores}"]
        share = r["macs"] / (one["p50"] / 1000) / peak[1] if r["macs"] else 0.0
        metric = f"{r['metric'][0]} {r['metric'][1]:.4g}" if r["metric"] else "—"
        batch = f"{r['batch_per_s']:,.0f} ({1000 / one['p50']:,.0f})" if r["batch_per_s"] \
            else "— (graph fixed to batch 1)"
        lines.append(f"| {r['name']} | {r['variant']} | {r['bytes'] / 1024:.0f} KiB | "
                     f"{one['p50']:.3f} / {one['p95']:.3f} / {one['p99']:.3f} | "
                     f"{many['p50']:.3f} / {many['p95']:.3f} / {many['p99']:.3f} | {batch} | {r['macs']:,} | "
                     f"{share:.1%} | "
                     f"{metric} |")
    if agent:
        cnn = next(r for r in rows if r["name"] == "cnn")
        bare = 1000 / cnn["threads_1"]["p50"]
        lat = agent["latency_ms"]
        runs = [agent["agent_frames_per_s"], *agent.get("camera_again", [])]
        median = float(np.median(runs))
        lines += ["", "## The agent end to end (mosquitto on loopback, agent in its own process)", "",
                  "| figure | value |", "| --- | --- |",
                  f"| camera pipeline, replay source, in the agent (time stamps of its first and last message), "
                  f"median of {len(runs)} runs (range) | {median:.0f} frames/s ({median / bare:.1%} of the bare int8 "
                  f"invoke rate {bare:.0f}/s; range {min(runs) / bare:.1%} to {max(runs) / bare:.1%}) |",
                  f"| ... first run, as delivered to a subscriber on the same {cores} cores | "
                  f"{agent['frames_per_s']:.0f} frames/s ({agent['frames_per_s'] / bare:.1%}) |",
                  f"| the same camera code in one process, results built but not published | "
                  f"{agent['in_process_frames_per_s']:.0f} frames/s "
                  f"({agent['in_process_frames_per_s'] / bare:.1%}) |",
                  f"| the CNN's invoke inside the agent while it publishes, p50 | "
                  f"{agent['cnn_in_agent_p50_ms']:.3f} ms (alone: {cnn['threads_1']['p50']:.3f} ms invoke only) |",
                  f"| sensor readings, input topic -> anomaly topic | {agent['readings_per_s']:.0f} readings/s |",
                  f"| reading publish -> alert arrival | p50 {lat.get('p50', float('nan')):.1f} ms, "
                  f"p95 {lat.get('p95', float('nan')):.1f} ms |",
                  f"| forecasts | {agent['forecasts_per_s']:.0f} forecasts/s |",
                  f"| start-up to the first message (`online`) | {agent['startup_s']:.2f} s |",
                  f"| resident memory after the frames / at the end | {agent['rss_mb_after_frames']:.0f} MB / "
                  f"{agent['rss_mb_end']:.0f} MB |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--invokes", type=int, default=1000)
    parser.add_argument("--no-agent", action="store_true", help="models only (no broker needed)")
    parser.add_argument("--frames", type=int, default=30000, help="frames replayed as fast as the camera pipeline "
                        "takes them (drop_stale = false): the classification rate is its capacity")
    parser.add_argument("--camera-runs", type=int, default=5, help="agents started to measure the camera pipeline's "
                        "rate (the table gives their median and range)")
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--regions", action="store_true", help="only the camera-region rows (issue 17): printed "
                        "and written into their section of --out")
    args = parser.parse_args(argv)
    if args.regions:
        return regions_only(args.models_dir, args.out)
    info = machine()
    cores = int(info["cores"])
    peak = {1: peak_macs_per_second(1), cores: peak_macs_per_second(cores)}
    manifest = read_manifest(args.models_dir / "manifest.json")
    rows = [bench_model(entry, args.models_dir, args.invokes) for _, entry in sorted(manifest.models.items())]
    agent = None if args.no_agent else bench_agent(args.models_dir, args.frames, args.readings)
    if agent is not None:
        agent["camera_again"] = bench_camera_again(args.models_dir, args.frames, args.camera_runs - 1)
        agent["in_process_frames_per_s"] = bench_camera_in_process(args.models_dir, args.frames)
    text = render(info, rows, agent, peak)
    if agent is not None:
        from tools.bench_regions import bench_regions

        text += "\n" + bench_regions(args.models_dir, min(args.frames, 3000))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = "# edgepipe benchmarks\n\nMade by `make bench` (`python -m tools.bench`" + \
        ", then `python -m training bench` where TensorFlow is installed).\n\n"
    args.out.write_text(header + text + kept_sections(args.out, text))
    return 0


def kept_sections(out: Path, text: str) -> str:
    """The `## ` sections of `out` this run did not write (the fleet's and the brokers' own benchmarks)."""
    old = out.read_text() if out.exists() else ""
    titles = {line for line in text.splitlines() if line.startswith("## ")}
    sections = ["## " + part for part in old.split("\n## ")[1:]]
    return "".join("\n" + part.rstrip("\n") + "\n" for part in sections if part.splitlines()[0] not in titles)


def regions_only(models_dir: Path, out: Path) -> int:
    """The region rows alone, replacing their section of the benchmarks file (the rest is left as it is)."""
    from tools.bench_regions import bench_regions

    section = bench_regions(models_dir)
    print(section)
    replace_section(out, "## Camera regions", section)
    return 0


def replace_section(out: Path, title: str, section: str) -> None:
    """Put `section` (starting with its `## ` title) in place of the section of `out` whose title starts with
    `title`, or at the end; the rest of the file is left as it is."""
    text = out.read_text() if out.exists() else ""
    head, found, tail = text.partition(title)
    rest = tail.partition("\n## ")[2] if found else ""
    out.write_text(head.rstrip("\n") + "\n\n" + section + ("\n## " + rest if rest else ""))


if __name__ == "__main__":
    sys.exit(main())
