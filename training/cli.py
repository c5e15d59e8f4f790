"""`python -m training {cnn,autoencoder,gan,lstm,all,table}`: train, evaluate, export, write the manifest."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

from edge.manifest import Manifest, ManifestError, read_manifest, write_manifest
from training.datasets.errors import DatasetError
from training.export import ExportError
from training.paths import MODELS_DIR, REPORT_DIR
from training.profiles import PROFILES, get_config
from training.summary import results_table

log = logging.getLogger("training")
MODELS = ("cnn", "autoencoder", "gan", "lstm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     epilog="also: python -m training golden --help; the operator commands "
                                     "keygen, bundle and ship are `python -m fleet` (docs/updates.md)")
    parser.add_argument("model", choices=[*MODELS, "all", "table", "evaluate"],
                        help="which model to train and export; `table` prints the results table of --out; "
                        "`evaluate` measures every quality target on the files in --out")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="lecture: the lecture's training; default: `make models`; quick: smoke runs")
    parser.add_argument("--dataset", help="cnn/gan: fashion_mnist[:DIR], mnist[:DIR], digits, folder:DIR; "
                        "lstm: airline or FILE.csv[:COLUMN]; autoencoder: lecture or FILE.csv[:COL1,COL2]")
    parser.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    parser.add_argument("--flip", action="store_true", help="cnn on a small folder: augment with mirrored images "
                        "(right for camera crops of a scene; wrong for digits or letters)")
    parser.add_argument("--window", type=int, help="autoencoder: readings per sample (windowed mode for sensor CSVs)")
    parser.add_argument("--transform", help="lstm: what the LSTM sees: auto (chosen on the training months), none, "
                        "or log and/or dLAG joined by '+', e.g. log+d1+d12 (the profile's own: auto)")
    parser.add_argument("--season", type=int, help="lstm: season length in samples (default: from the CSV's dates)")
    parser.add_argument("--normal-rows", type=int, help="autoencoder on a sensor CSV: the first N rows are normal")
    parser.add_argument("--false-alarms-per-day", type=float,
                        help="autoencoder on a sensor CSV with timestamps: false alerts accepted on normal data "
                        "(default 0.1); the threshold and the k-of-n debounce follow from it and the reading rate")
    parser.add_argument("--false-alarms-per-1000", type=float,
                        help="the same for a CSV without timestamps, per 1,000 readings (default 1)")
    parser.add_argument("--time-features", choices=["none", "auto", "day", "week", "day+week"],
                        help="autoencoder: sin/cos of the time of day / day of week beside each reading")
    parser.add_argument("--window-norm", choices=["none", "mean", "zscore"],
                        help="autoencoder: normalise each feature over each window (shape, not level)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="where the .tflite files and manifest go")
    parser.add_argument("--report", type=Path, help="where the pictures go (default: the repository's "
                        "reports/training for the committed models, else OUT/reports)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def report_dir(args: argparse.Namespace) -> Path:
    """A model trained elsewhere (`--out`) must not overwrite the committed models' pictures."""
    if args.report is not None:
        return args.report
    return REPORT_DIR if args.out.resolve() == MODELS_DIR.resolve() else args.out / "reports"


def load_or_new(path: Path) -> Manifest:
    return read_manifest(path) if path.exists() else Manifest()


def golden_main(argv: list[str]) -> int:
    """`python -m training golden [--out DIR]`: add golden vectors to an existing export, from its files."""
    from training.export import add_golden

    parser = argparse.ArgumentParser(prog="python -m training golden", description=golden_main.__doc__)
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="the export folder (manifest.json + files)")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.out / "manifest.json")
    print("golden vectors for:", ", ".join(add_golden(manifest, args.out)))
    write_manifest(manifest, args.out / "manifest.json")
    return 0


#: subcommands with their own arguments (`python -m training bundle --help`), module:function
SUBCOMMANDS = {"golden": "training.cli:golden_main"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        module, _, function = SUBCOMMANDS[argv[0]].partition(":")
        return int(getattr(importlib.import_module(module), function)(argv[1:]) or 0)
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest_path = args.out / "manifest.json"
    try:
        if args.model == "table":
            print(results_table(read_manifest(manifest_path)))
            return 0
        if args.model == "evaluate":
            from training.quality import main as evaluate

            return evaluate(["--out", str(args.out)])
        chosen = MODELS if args.model == "all" else (args.model,)
        if args.dataset and len(chosen) > 1:
            raise SystemExit("--dataset applies to one model at a time (e.g. `python -m training cnn --dataset mnist`)")
        manifest = load_or_new(manifest_path)
        for name in chosen:
            ae_args = {"window": args.window, "normal_rows": args.normal_rows,
                       "false_alarms_per_day": args.false_alarms_per_day,
                       "false_alarms_per_1000": args.false_alarms_per_1000,
                       "time_features": args.time_features, "window_norm": args.window_norm}
            extra = ae_args if name == "autoencoder" else {}
            if name != "autoencoder" and any(v is not None for v in ae_args.values()):
                raise SystemExit("--window, --normal-rows, --false-alarms-*, --time-features and --window-norm "
                                 "apply to the autoencoder")
            if name == "lstm":
                extra = {"transform": args.transform, "season": args.season}
            elif args.transform or args.season:
                raise SystemExit("--transform and --season apply to the lstm")
            if name == "cnn" and args.flip:
                extra = {"flip": True}
            elif args.flip:
                raise SystemExit("--flip applies to the cnn")
            cfg = get_config(args.profile, name, dataset=args.dataset, epochs=args.epochs, **extra)
            task = importlib.import_module(f"training.tasks.{name}")
            started = time.monotonic()
            log.info("=== %s (%s profile): %s", name, args.profile, cfg)
            result = task.run(cfg, args.out, report_dir(args), args.profile)
            for entry in result.entries:
                manifest.upsert(entry)
            write_manifest(manifest, manifest_path)  # after each model, so a later failure keeps earlier ones
            log.info("=== %s done in %.0f s; pictures: %s", name, time.monotonic() - started,
                     ", ".join(str(p) for p in result.pictures[:4]))
        print(results_table(manifest))
        return 0
    except (DatasetError, ManifestError, ExportError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
