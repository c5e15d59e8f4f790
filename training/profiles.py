"""Training profiles: `lecture` (the lecture's hyper-parameters and amount of training),
`default` (what `make models` uses: all four in about half an hour on 2 CPU cores) and
`quick` (a few minutes in all, for smoke runs). One dataclass per model keeps every knob
visible, and the chosen config is written into the manifest beside the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class CNNConfig:
    dataset: str = "fashion_mnist"
    arch: str = "compact"  # "lecture": the lecture's network (the lecture profile)
    # None: from the data size -- at least 12 epochs and at least `min_steps` optimizer steps (12 epochs of
    # 422 steps for Fashion-MNIST's 54,000 images; ~75 epochs of 41 steps for 1,300 digits)
    epochs: int | None = None
    batch_size: int | None = None  # None: 128, or 32 for a small set (below `small_set` training images)
    min_steps: int = 3000
    max_epochs: int = 150
    # Below this many training images the small-set recipe applies: light augmentation (shifts, small
    # rotations and zooms), batch-norm momentum 0.9, early stopping on the validation split
    # (restoring the best weights) and a final pass that recomputes the batch-norm statistics
    small_set: int = 20000
    flip: bool = False  # small sets: mirrored images too (`--flip`; camera crops of doors, feeders, printers)
    patience: int = 15  # epochs without a better validation loss before stopping (small sets)
    learning_rate: float = 1e-3
    cosine_decay: bool = True  # the learning rate decays to 0 over the run
    validation_fraction: float = 0.1
    train_limit: int | None = None  # first N training images (quick runs)
    test_limit: int | None = None
    max_accuracy_drop: float = 0.5  # int8 vs Keras, in points (at least 2 held-out images); export fails beyond it
    # Export is refused when the quantized file's held-out accuracy is near chance -- below chance (the
    # largest class's share) + this fraction of the way to 100%, or within 3 binomial standard errors
    # of chance -- or this many points below the best Keras validation accuracy (plus sampling noise)
    min_gain_over_chance: float = 0.25
    max_validation_gap: float = 0.15
    seed: int = 1


@dataclass
class AutoencoderConfig:
    dataset: str = "lecture"
    # None: the lecture's 32-16-32; N: a code of N numbers (models/autoencoder.py); 0: max(1, inputs // 4)
    code_units: int | None = 0
    hidden: tuple[int, int] = (64, 32)  # encoder widths, mirrored in the decoder (the lecture's: 32, 16)
    # readings per sample: W consecutive readings of F features, flattened (W * F inputs). None: 1 for
    # the lecture's independent draws and for CSVs of 4 columns or more; fewer columns: a sweep picks W
    window: int | None = None
    normal_rows: int | None = None  # sensor CSVs: the first N rows are the normal period (None: all)
    time_features: str = "none"  # sensor CSVs with a timestamp: none, day, week, day+week or auto
    window_norm: str = "none"  # none, mean or zscore per feature over each window (edge/sensor_window.py)
    # alerts on sensor CSVs (edge/calibration.py): the false alarms the user accepts on normal data, per day
    # (with a timestamp column) or per 1,000 readings (without); the k-of-n debounce follows the reading period
    false_alarms_per_day: float = 0.1
    false_alarms_per_1000: float = 1.0
    debounce_k: int | None = None  # None: derived from the reading period
    debounce_n: int | None = None
    epochs: int = 100
    batch_size: int = 100
    optimizer: str = "adam"  # the lecture's is SGD at Keras' default learning rate 0.01
    learning_rate: float = 3e-3
    cosine_decay: bool = True  # learning rate decays to 0 over the run: a tighter fit of the normal line
    threshold_percentile: float = 99.0  # the lecture's data: of held-out normal reconstruction errors
    # int16 activations: the one-number code spans the whole line, and int8 steps along it add as much
    # error as a "wrong" reading's offset (int8: 74.7% of wrong readings flagged, float: 79.2%)
    quantization: str = "int16x8"
    seed: int = 1


@dataclass
class GANConfig:
    dataset: str = "fashion_mnist"
    # "conditional": label in, image out -- a small DCGAN with an auxiliary-classifier discriminator
    # (training/models/cgan.py); "lecture": the lecture's dense, unconditional GAN (training/models/gan.py)
    arch: str = "conditional"
    epochs: int = 30
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: a full pass over the training images
    sample_every: int = 5  # epochs between sample grids
    train_limit: int | None = None
    # conditional only: filters of the generator's 7x7 maps / the discriminator's first conv, Adam's rate
    g_width: int = 64
    d_width: int = 32
    learning_rate: float = 2e-4
    class_weight: float = 1.0  # weight of the class losses beside the real/fake losses
    ema_decay: float = 0.0  # conditional only: export an exponential moving average of the generator's weights
    # the sd of the noise the edge feeds (manifest `preprocess.latent_scale`): < 1 is the truncation trick
    # (BigGAN): typical samples for some variety; the edge's Generator applies it (docs/gan.md)
    latent_scale: float = 1.0
    seed: int = 1


@dataclass
class LSTMConfig:
    dataset: str = "airline"
    units: int = 4
    look_back: int = 13  # a season and one month of context
    epochs: int = 30
    learning_rate: float = 1e-3
    train_fraction: float = 0.67
    # what the LSTM sees (edge/series.py): log, then (1 - B^lag) for each lag. "auto": chosen per series by
    # one-step validation on the last training months (training/series_transform.py); or explicit: "none",
    # "log", "d1", "log+d12", "log+d1+d12", ... (log is never chosen for a series with a value <= 0)
    transform: str = "auto"
    season: int | None = None  # season length for the seasonal difference and baselines; None: the data's frequency
    # "step": one step ahead through every month, features scaled by the training months' mean and deviation;
    # "lecture": the lecture's min/max scaling of the whole series and its off-by-one windows (no transform only)
    protocol: str = "step"
    # int16 activations, int8 weights: int8 activations compound over the 5 unrolled steps and the
    # carried state (2.7% of the output range off Keras after 500 epochs; int16x8 stays within 0.5%)
    quantization: str = "int16x8"
    seed: int = 7  # the lecture's numpy.random.seed(7)


@dataclass
class Profile:
    name: str
    cnn: CNNConfig
    autoencoder: AutoencoderConfig
    gan: GANConfig
    lstm: LSTMConfig


PROFILES: dict[str, Profile] = {
    # The CNN's training is not given in the lecture; one epoch of Adam at batch 128 is the
    # figure docs/DESIGN.md cites (~84% on Fashion-MNIST). The GAN's loop runs range(batch_size)
    # = 128 steps per epoch for 400 epochs.
    "lecture": Profile(
        "lecture",
        CNNConfig(arch="lecture", epochs=1, batch_size=128, cosine_decay=False),
        AutoencoderConfig(code_units=None, hidden=(32, 16), epochs=200, optimizer="sgd", learning_rate=0.01,
                          cosine_decay=False, threshold_percentile=99.5, quantization="int8"),
        GANConfig(arch="lecture", epochs=400, steps_per_epoch=128, sample_every=20),
        LSTMConfig(look_back=5, epochs=500, transform="none", protocol="lecture"),
    ),
    # the conditional GAN: 12 passes at batch 64 (11,244 steps), class losses x2, the generator's weight
    # average exported, no truncation: 7.6 CPU-minutes for the whole task (docs/gan.md)
    "default": Profile("default", CNNConfig(), AutoencoderConfig(), GANConfig(epochs=12, batch_size=64, sample_every=1,
                                                                       class_weight=2.0, ema_decay=0.999),
                       LSTMConfig()),
    "quick": Profile(
        "quick",
        CNNConfig(arch="lecture", epochs=1, cosine_decay=False, train_limit=6000, test_limit=1000,
                  max_accuracy_drop=1.5),
        AutoencoderConfig(epochs=10),
        GANConfig(epochs=2, steps_per_epoch=50, sample_every=1, train_limit=6400),
        LSTMConfig(epochs=5),
    ),
}


def get_config(profile: str, model: str, **overrides: Any) -> Any:
    """The profile's config of one model, with CLI overrides (None values are ignored)."""
    base = getattr(PROFILES[profile], model)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes)
