"""Put this folder on PYTHONPATH to make a Python process like a Pi: TensorFlow, Keras and
scikit-learn cannot be imported (an ImportError, as if they were not installed)."""

import importlib.abc
import sys

BLOCKED = {"tensorflow", "keras", "tf_keras", "sklearn"}


class _BlockHostLibraries(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib protocol
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: the edge must run with a TFLite runtime only")
        return None


sys.meta_path.insert(0, _BlockHostLibraries())
