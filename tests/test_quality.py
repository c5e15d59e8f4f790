"""The quality targets (issue #5), re-measured on the committed quantized files through the edge runtime."""

from __future__ import annotations

import pytest

from edge.models.manifest import read_manifest
from edge.models.runtime import TFLiteModel
from tests.conftest import MODELS_DIR, requires_dataset
from training.quality.evaluate import autoencoder_quality, cnn_quality, gan_quality, lstm_quality, table

MANIFEST = read_manifest(MODELS_DIR / "manifest.json")
# the CNN's test set, all 10,000 images: the CNN's own gate and the real images the GAN is measured against
needs_cnn_data = requires_dataset(MANIFEST.get("cnn").dataset)


def load(name: str) -> TFLiteModel:
    return TFLiteModel.from_entry(MANIFEST.get(name), MODELS_DIR)


@needs_cnn_data
def test_cnn_is_accurate_small_and_cheap() -> None:
    q = cnn_quality(MANIFEST.get("cnn"), load("cnn"))
    assert q["samples"] == 10000
    assert q["accuracy"] >= 0.925
    assert q["size_bytes"] <= 1_000_000 and q["macs"] <= 20_000_000
    assert q["accuracy"] == pytest.approx(MANIFEST.get("cnn").metrics["accuracy"], abs=1e-9)


def test_lstm_beats_the_naive_forecasts() -> None:
    q = lstm_quality(MANIFEST.get("lstm"), load("lstm"))
    assert q["test_months"] == "101-142"  # the lecture's test months
    assert q["persistence_rmse"] == pytest.approx(50.14, abs=0.01)  # the reference figures,
    assert q["naive_growth_rmse"] == pytest.approx(16.55, abs=0.01)  # recomputed: same protocol
    assert q["seasonal_naive_rmse"] == pytest.approx(43.01, abs=0.01)  # the textbook y[t-12]
    assert q["sarima_rmse"] == pytest.approx(14.58, abs=0.05)
    assert q["test_rmse"] <= 16.0 and q["test_rmse"] < q["naive_growth_rmse"] < q["seasonal_naive_rmse"]
    assert q["winner"] == "sarima"  # said as it is: the airline model still wins on its own series
    assert 0 < q["mape_last36"] < 10


def test_autoencoder_flags_wrong_and_noisy_readings_at_few_false_alerts() -> None:
    q = autoencoder_quality(MANIFEST.get("autoencoder"), load("autoencoder"))
    assert q["false_alert_rate_fresh"] <= 0.015
    assert q["detection_rate_wrong"] >= 0.78 and q["detection_rate_noisy"] >= 0.64
    assert q["auc_wrong"] >= 0.89


@needs_cnn_data
def test_evaluate_reproduces_the_generators_figures_and_their_references() -> None:
    """The gates themselves are measured independently in tests/test_gan_quality.py; here
    `python -m training evaluate` must give what the manifest says, with sane reference figures."""
    results = gan_quality(MANIFEST, MODELS_DIR)
    for name in ("gan", "gan_float32"):
        claimed = MANIFEST.get(name).metrics
        for key in ("frechet", "class_agreement", "min_class_share", "frechet_real", "frechet_blurred",
                    "frechet_noised", "frechet_penultimate"):
            assert results[name][key] == pytest.approx(claimed[key], rel=1e-6), (name, key)
    q = results["gan"]
    ratio = MANIFEST.get("gan").metrics["frechet_ratio_vs_float32"]
    assert q["frechet_ratio_vs_float32"] == pytest.approx(ratio, rel=1e-6)
    # real images are nearest, then blurred, then noised ones; generated images are told apart from real ones
    assert q["frechet_real"] < q["frechet_blurred"] < q["frechet_noised"]
    assert q["frechet_real"] < q["frechet"]
    text = table({"gan": results, **fake_rest()})
    assert "GAN class agreement" in text and f"real train {q['frechet_real']:.1f}" in text


def fake_rest() -> dict:
    """Just enough of the other models' results to render the table."""
    base = {"accuracy": 0.93, "size_bytes": 1, "macs": 1, "test_rmse": 15.0, "mape_last36": 3.0,
            "persistence_rmse": 50.1, "seasonal_naive_rmse": 43.0, "naive_growth_rmse": 16.5, "sarima_rmse": 14.6,
            "winner": "sarima", "false_alert_rate_fresh": 0.01,
            "detection_rate_wrong": 0.8, "detection_rate_noisy": 0.65, "auc_wrong": 0.9}
    return {m: {m: base, f"{m}_float32": base} for m in ("cnn", "lstm", "autoencoder")}
