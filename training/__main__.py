"""`python -m training ...` (training/cli.py). keygen, bundle and ship are fleet's operator commands
(`python -m fleet`), still answered here: they are forwarded before anything imports TensorFlow."""

import sys

from fleet.cli import COMMANDS as FLEET_COMMANDS
from fleet.cli import main as fleet_main

if sys.argv[1:2] and sys.argv[1] in FLEET_COMMANDS:
    sys.exit(fleet_main(sys.argv[1:]))

from training.cli import main  # noqa: E402 -- TensorFlow from here on

sys.exit(main())
