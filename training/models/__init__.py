"""Keras builders of the four lecture models (architecture only; training lives in `training.tasks`)."""
