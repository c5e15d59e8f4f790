"""The GAN generator: noise (and a class, for a conditional one) -> images (the synthetic camera, the
self-test, demo pictures)."""

from __future__ import annotations

import numpy as np

from edge.models.manifest import ModelEntry
from edge.models.runtime import TFLiteModel
from edge.models.wrapper import ModelWrapper


class Generator(ModelWrapper):
    """The GAN generator. A class-conditional one (the manifest's `preprocess.label_input`) takes a
    one-hot class beside the noise; the lecture's unconditional one takes noise only.

    Callers draw noise from normal(0, 1); it is multiplied by `preprocess.latent_scale` (default 1), the
    "truncation trick" (BigGAN, Brock et al. 2019): typical, cleaner samples for some variety (docs/gan.md).
    """

    def __init__(self, entry: ModelEntry, model: TFLiteModel, seed: int = 0) -> None:
        super().__init__(entry, model)
        pre = entry.preprocess
        self.label_input: str | None = pre.get("label_input")
        self.num_classes = int(pre.get("num_classes", 0))
        if self.label_input and pre.get("label_encoding", "one_hot") != "one_hot":
            raise ValueError(f"model {entry.name!r}: label_encoding {pre['label_encoding']!r} is not one_hot")
        self.noise_input = next(t.name for t in entry.inputs if t.name != self.label_input)
        scale = pre.get("latent_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 10:
            raise ValueError(f"model {entry.name!r}: latent_scale must be a number in (0, 10], got {scale!r}")
        self.latent_scale = np.float32(scale)
        self.rng = np.random.default_rng(seed)  # the classes drawn when none is asked for

    def draw_label(self) -> int | None:
        """A uniformly drawn class (seeded) for a conditional generator, None for an unconditional one."""
        return int(self.rng.integers(self.num_classes)) if self.label_input else None

    def generate(self, noise: np.ndarray, label: int | None = None) -> np.ndarray:
        """Noise (latent_dim,) and, for a conditional generator, a class index (None: drawn uniformly)
        -> uint8 image (H, W) with the manifest's pixel scaling."""
        entry, post = self.entry, self.entry.postprocess
        feeds = {self.noise_input: (noise * self.latent_scale).reshape(entry.input(self.noise_input).shape)}
        if self.label_input:
            label = self.draw_label() if label is None else int(label)
            if not 0 <= label < self.num_classes:
                raise ValueError(f"class {label} is out of range: model {entry.name!r} has {self.num_classes}")
            one_hot = np.zeros(entry.input(self.label_input).shape, np.float32)
            one_hot.reshape(-1)[label] = 1.0
            feeds[self.label_input] = one_hot
        elif label is not None:
            raise ValueError(f"model {entry.name!r} is unconditional: it takes no class label")
        out = self._run(feeds)
        pixels = out[entry.outputs[0].name] * post["pixel_scale"] + post["pixel_offset"]
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(post["height"], post["width"])
