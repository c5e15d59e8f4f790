"""The camera kind, `[[camera]]`: frames -> the CNN -> `vision/<camera>/class`, or per region of the frame a
debounced state (`[[camera.regions]]`, docs/cameras.md).

`config` (the table), `pipeline` (three threads: capture, inference, publishing), the region parts
(`regions`: crops; `motion`: the gate; `state`: the debounce; `runner`: one region in the inference
thread; `output`, `snapshot`: messages and pictures), `messages` (every payload, the Home Assistant
entities, `edge subscribe`'s lines) and `capture` (`python -m edge capture` and `cmd/capture`).
"""

from __future__ import annotations

from edge.models.classifier import Classifier
from edge.models.generator import Generator
from edge.models.loader import ModelLoader
from edge.pipelines.camera.capture import COMMANDS
from edge.pipelines.camera.config import CameraConfig, CameraModels
from edge.pipelines.camera.messages import describe, discovery
from edge.pipelines.camera.pipeline import CameraPipeline
from edge.pipelines.camera.regions import region_classifiers
from edge.pipelines.registry import PipelineKind, Wiring
from edge.sources import camera_source, gan_options
from edge.sources.frames import check_gan_classes, make_frame_source


def load(cfg: CameraConfig, loader: ModelLoader) -> CameraModels:
    classifier = Classifier(*loader.load(cfg.model, "classify", f"camera {cfg.name!r}"), invert=cfg.invert,
                            top_k=cfg.top_k)
    generator = None
    spec = camera_source(cfg.source)
    if spec.kind == "gan":
        generator = Generator(*loader.load("gan", "generate", f"camera {cfg.name!r} (source gan)"))
        check_gan_classes(gan_options(spec.arg), generator)  # refused before anything is built or swapped
    return CameraModels(classifier, generator, region_classifiers(cfg, loader, classifier))


def build(cfg: CameraConfig, models: CameraModels, wiring: Wiring) -> CameraPipeline:
    source = make_frame_source(camera_source(cfg.source), cfg.loop, models.generator, tuple(cfg.resolution))
    cfg.region_labels = {name: c.labels for name, c in models.regions.items()}
    return CameraPipeline(cfg, source, models.classifier, wiring.publisher, models.regions, wiring.loader.state_dir)


KIND = PipelineKind("camera", CameraConfig, load, build, discovery, COMMANDS, describe)
