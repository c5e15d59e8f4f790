"""`python -m fleet {keygen,bundle,ship,status,rollout} ...`: the operator commands, each with its own `--help`.

Each command's module is imported only when it is named, so `python -m training keygen|bundle|ship`
(kept as aliases) can forward here before anything imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module:function, one line for the overview)
COMMANDS = {
    "keygen": ("fleet.bundle:keygen", "a new Ed25519 signing key; prints the public key for [update] trusted_keys"),
    "bundle": ("fleet.bundle:main", "pack and sign an export (manifest + files) into a bundle"),
    "ship": ("fleet.ship:main", "deliver a bundle to one device over MQTT, resumably"),
    "status": ("fleet.view:main", "every device on the broker from its retained topics (--json, --html, --watch)"),
    "rollout": ("fleet.rollout:main", "one bundle to many devices in stages, halting by itself on failures"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module, _, function = COMMANDS[argv[0]][0].partition(":")
        return int(getattr(importlib.import_module(module), function)(argv[1:]) or 0)
    overview = "\n".join(f"  {name:8} {line}" for name, (_, line) in COMMANDS.items())
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"commands:\n{overview}\n\nsigned model bundles: docs/updates.md")
    parser.add_argument("command", choices=list(COMMANDS), help="then COMMAND --help for its options")
    parser.parse_args(argv[:1])
    return 2  # not reached: a known command returned above, argparse exits on anything else
