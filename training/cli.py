"""`python -m training {cnn,autoencoder,gan,lstm,all,table,evaluate}`: train, evaluate, export, write the manifest.

The models, their options and the profiles come from the task registry (training/tasks/registry.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

from edge.models.manifest import Manifest, read_manifest, write_manifest
from training.argtypes import MAX_EPOCHS, cannot_write, folder, whole
from training.guard import configure_logging, guarded
from training.paths import MODELS_DIR, REPORT_DIR
from training.quality.summary import results_table
from training.tasks.base import Task
from training.tasks.registry import PROFILES, get_config, tasks

log = logging.getLogger("training")


def build_parser() -> argparse.ArgumentParser:
    """The options every task takes, then each task's own, in a group named after it."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0],
                                     epilog=f"also: python -m training {{{','.join(SUBCOMMANDS)}}} --help (golden "
                                     "vectors, the generator's latent scale, benchmark, real-data runs, the demo's "
                                     "data); keygen, bundle and ship: python -m fleet (docs/updates.md)")
    parser.add_argument("model", choices=[*tasks(), "all", "table", "evaluate"],
                        help="which model to train and export; `table` prints the results table of --out; "
                        "`evaluate` measures every quality target on the files in --out")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="; ".join(f"{name}: {what}" for name, what in PROFILES.items()))
    parser.add_argument("--dataset", help="; ".join(f"{t.name}: {t.datasets}" for t in tasks().values()))
    parser.add_argument("--epochs", type=whole(1, MAX_EPOCHS), help="override the profile's number of epochs "
                        f"(at most {MAX_EPOCHS:,})")
    parser.add_argument("--out", type=folder, default=MODELS_DIR, help="where the .tflite files and manifest go")
    parser.add_argument("--report", type=folder, help="where the pictures go (default: the repository's "
                        "reports/training for the committed models, else OUT/reports)")
    parser.add_argument("-v", "--verbose", action="store_true")
    for task in tasks().values():
        if task.options:
            group = parser.add_argument_group(f"{task.name} options")
            for option in task.options:
                option.add_to(group)
    return parser


def report_dir(args: argparse.Namespace) -> Path:
    """A model trained elsewhere (`--out`) must not overwrite the committed models' pictures."""
    if args.report is not None:
        return args.report
    return REPORT_DIR if args.out.resolve() == MODELS_DIR.resolve() else args.out / "reports"


def load_or_new(path: Path) -> Manifest:
    return read_manifest(path) if path.exists() else Manifest()


def chosen_tasks(args: argparse.Namespace) -> list[Task]:
    """The tasks to train, refusing options that do not belong to them: a task's own options apply
    when it is trained alone, and `--dataset` to one model at a time."""
    chosen = list(tasks().values()) if args.model == "all" else [tasks()[args.model]]
    if args.dataset and len(chosen) > 1:
        raise SystemExit("--dataset applies to one model at a time (e.g. `python -m training cnn --dataset mnist`)")
    for task in tasks().values():
        given = any(getattr(args, o.dest) is not None for o in task.options)
        if given and chosen != [task]:
            raise SystemExit(task.misuse())
    return chosen


def train(task: Task, args: argparse.Namespace, manifest: Manifest, manifest_path: Path) -> list[str]:
    """One task with the profile's config and the command line's overrides; its entries are written at once,
    so a later failure keeps the models done before. Returns the names of the entries written."""
    own = {o.dest: getattr(args, o.dest) for o in task.options}
    cfg = get_config(args.profile, task.name, dataset=args.dataset, epochs=args.epochs, **own)
    started = time.monotonic()
    log.info("=== %s (%s profile): %s", task.name, args.profile, cfg)
    result = task.run(cfg, args.out, report_dir(args), args.profile)
    for entry in result.entries:
        manifest.upsert(entry)
    write_manifest(manifest, manifest_path)
    log.info("=== %s done in %.0f s; pictures: %s", task.name, time.monotonic() - started,
             ", ".join(str(p) for p in result.pictures[:4]))
    return [entry.name for entry in result.entries]


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


#: subcommands with their own arguments (`python -m training golden --help`), module:function; keygen, bundle
#: and ship (`python -m fleet`) are forwarded by training/__main__.py before anything imports TensorFlow
SUBCOMMANDS = {"golden": "training.cli:golden_main", "gan-quality": "training.quality.gan:main",
               "bench": "training.experiments.bench:main", "realdata": "training.experiments.realdata:main",
               "sample-data": "training.experiments.sample_data:main", "nab": "training.experiments.nab:main"}


def main(argv: list[str] | None = None) -> int:
    """The command line: a user's bad input is an error in words, exit 2 (`DatasetError`, `ManifestError`,
    `ExportError`); anything else is a bug, told in one line, exit 1, its traceback only with -v (at DEBUG).
    KeyboardInterrupt and SystemExit (argparse's own refusals) pass through."""
    return guarded(run, sys.argv[1:] if argv is None else list(argv))


def run(argv: list[str]) -> int:
    """A sub-command (its own arguments; -v is the trainer's, taken out), or train, tabulate or evaluate."""
    if argv and argv[0] in SUBCOMMANDS:
        module, _, function = SUBCOMMANDS[argv[0]].partition(":")
        rest = [a for a in argv[1:] if a not in ("-v", "--verbose")]
        if len(rest) < len(argv) - 1:
            configure_logging(True)
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    manifest_path = args.out / "manifest.json"
    if args.model == "table":
        print(results_table(read_manifest(manifest_path)))
        return 0
    if args.model == "evaluate":
        from training.quality.evaluate import main as evaluate

        return evaluate(["--out", str(args.out)])
    chosen = chosen_tasks(args)
    for option, where in (("--out", args.out), ("--report", args.report)):
        if where is not None and (problem := cannot_write(where)):
            build_parser().error(f"argument {option}: {problem}")
    manifest = load_or_new(manifest_path)
    trained = [name for task in chosen for name in train(task, args, manifest, manifest_path)]
    # the models just trained, not others the folder holds (a CNN's rows and note after an autoencoder run)
    print(results_table(Manifest({name: manifest.models[name] for name in trained})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
