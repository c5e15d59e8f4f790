"""A Python process like a Pi's: TensorFlow, Keras and scikit-learn cannot be imported (tests/no_tf_site)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ROOT

NO_TF_SITE = Path(__file__).parents[1] / "no_tf_site"
HOST_ONLY = {"tensorflow", "keras", "tf_keras", "sklearn"}


def no_tf_env() -> dict[str, str]:
    """Environment for a subprocess in which importing the host-only libraries fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(NO_TF_SITE), str(ROOT), env.get("PYTHONPATH", "")])
    return env
