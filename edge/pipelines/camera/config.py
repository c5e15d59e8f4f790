"""`[[camera]]`: one table's settings (its regions are `[[camera.regions]]`), and the models a camera runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.fields import ConfigError, setting
from edge.models.classifier import Classifier
from edge.models.generator import Generator
from edge.pipelines.camera.regions import build_regions, resolution_problem
from edge.sources import camera_source


@dataclass
class CameraConfig:
    name: str = setting(name=True)
    source: str = setting(parse=camera_source)  # picamera2, opencv:<index|file|url>, folder:<dir>, replay:<npz>, gan
    model: str = "cnn"
    fps: float = setting(5.0, ge=0)  # 0: as fast as the source delivers
    invert: bool | None = None  # None: as the manifest says
    loop: bool = False
    drop_stale: bool = True  # a live camera: keep only the newest frame; false: a file is read no faster
    top_k: int = setting(3, ge=1, le=1000)
    retry_max: float = setting(30.0, gt=0)  # seconds between attempts to reopen a dead camera, at most
    resolution: list = field(default_factory=lambda: [320, 240])  # picamera2: width, height of the frames
    regions: list = field(default_factory=list)  # [[camera.regions]] (edge.pipelines.camera.regions.RegionConfig)
    dataset_dir: str = ""  # captured crops (cmd/capture, capture_uncertain); default <state_dir>/dataset
    # each region's labels once its model is loaded: the options of its Home Assistant enum sensor
    region_labels: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def validate(self) -> None:
        resolution_problem(self.resolution)
        self.regions = build_regions(self.regions)
        if self.regions and camera_source(self.source).kind == "gan":
            raise ConfigError("regions: the GAN camera's 28x28 pictures have no regions to watch")


@dataclass(frozen=True)
class CameraModels:
    """A camera's classifier, and the generator when the camera is the GAN (`source = "gan"`)."""

    classifier: Classifier
    generator: Generator | None = None
    regions: dict[str, Classifier] = field(default_factory=dict)  # region name -> its classifier
