"""The results table (`python -m training table`): the lecture's reported numbers beside ours, Keras and
TFLite side by side.

Built from the manifest alone, so it describes exactly the files that ship.
"""

from __future__ import annotations

from edge.models.manifest import Manifest

#: (model, metric key, label, lecture figure, format)
ROWS = [
    ("cnn", "accuracy", "CNN test accuracy", "~84% (1 epoch)¹", "{:.2%}"),
    ("lstm", "train_rmse", "LSTM train RMSE (passengers)", "19.50", "{:.2f}"),
    ("lstm", "test_rmse", "LSTM test RMSE (passengers)", "48.75", "{:.2f}"),
    ("lstm", "mape_last36", "LSTM MAPE, last 36 months", "—", "{:.2f}%"),
    ("autoencoder", "clean_mse", "AE clean MSE", "0.0008", "{:.5f}"),
    ("autoencoder", "test_mse", "AE test MSE", "0.0008", "{:.5f}"),
    ("autoencoder", "noisy_mse", "AE noisy MSE", "0.0042", "{:.5f}"),
    ("autoencoder", "wrong_mse", "AE wrong MSE", "0.0082", "{:.5f}"),
    ("autoencoder", "detection_rate_wrong", "AE wrong readings flagged", "—", "{:.1%}"),
    ("autoencoder", "detection_rate_noisy", "AE noisy readings flagged", "—", "{:.1%}"),
    ("autoencoder", "false_alert_rate_heldout", "AE false alerts, held-out clean (out of sample³)", "—", "{:.2%}"),
    ("gan", "mean_abs_diff_vs_keras", "GAN int8 vs Keras pixels (mean abs, [-1,1])", "—", "{:.4f}"),
    ("gan", "frechet", "GAN Fréchet distance to real test images (CNN log-probabilities)", "—", "{:.1f}"),
    ("gan", "class_agreement", "GAN class agreement (CNN's class = requested)", "—", "{:.1%}"),
    ("gan", "min_class_share", "GAN smallest class share (uniformly drawn labels)", "—", "{:.1%}"),
]
LECTURE_IMAGES = "fashion_mnist"  # the lecture's CNN and GAN figures are for this dataset only
CNN_NOTE = ("¹ The lecture gives the CNN's layers but no training recipe or accuracy; ~84% after one "
            "epoch is what its network reaches on Fashion-MNIST here (Adam, batch 128).")

#: the autoencoder on a sensor CSV: (metric key, label, format); units and columns come from the entry
SENSOR_ROWS = [
    ("window", "AE window (readings per input)", "{:d}"),
    ("code_units", "AE code size (numbers)", "{:d}"),
    ("test_mse", "AE held-out normal MSE (scaled units)", "{:.5f}"),
    ("holdout_readings", "AE held-out normal readings (they place the k-of-n threshold)", "{:d}"),
    ("holdout_days", "AE held-out normal days", "{:.2f}"),
]
#: the episode rule, in force on a manifest with `postprocess.alerts.episode` (training/quality/episode_holdout.py)
EPISODE_ROWS = [
    ("episode_false_per_day_heldout", "AE false alerts per day observed, rule in force (episode rule), "
     "held-out normal (out of sample⁴)", "{:.3g}"),
    ("episode_false_episodes_heldout", "AE episode rule: false episodes counted on them", "{:d}"),
    ("episode_heldout_days", "AE episode rule: held-out normal days counted (after its burn-in)", "{:.2f}"),
]
#: the k-of-n rule: what a manifest without an episode plan, a commanded or a configured threshold runs
KOFN_ROWS = [
    ("threshold", "AE k-of-n rule: alert threshold (k-th largest of n scores)", "{:.5g}"),
    ("false_alarms_per_day_planned", "AE k-of-n rule: false alerts per day, planned", "{:.3g}"),
    ("expected_false_alerts_per_day", "AE k-of-n rule: expected false alerts per day (the calibration's own "
     "estimate)", "{:.3g}"),
    ("alert_episodes_per_day_test", "AE k-of-n rule: alert episodes per day, held-out normal (out of sample³)",
     "{:.3g}"),
    ("alert_episodes_per_day_clean", "AE k-of-n rule: alert episodes per day, training rows (in sample)", "{:.3g}"),
    ("expected_false_alerts_per_1000", "AE k-of-n rule: expected false alerts per 1,000 readings", "{:.3g}"),
    ("false_alert_rate_test", "AE k-of-n rule: readings alerting, held-out normal (out of sample³)", "{:.2%}"),
    ("detection_rate_after", "AE k-of-n rule: readings alerting after the normal period", "{:.2%}"),
]
OUT_OF_SAMPLE = ("alert_episodes_per_day_test", "false_alert_rate_test")
HOLDOUT_NOTE = ("³ Each half of the held-out normal readings measured by the rule the other half placed "
                "(2-fold cross-fit, in time order for a stream); the shipped threshold is placed on all of them.")
EPISODE_NOTE = ("⁴ The episode rule as the agent runs it (the manifest's plan and burn-in, one update per reading) "
                "over the quantized file's scores of the whole normal period in time order; its episodes counted only "
                "on held-out normal readings after its burn-in and first day of history: readings that trained no "
                "weight and placed nothing of the rule.")


def _fmt(fmt: str, value: object) -> str:
    if fmt.endswith("d}") and isinstance(value, float) and value.is_integer():
        value = int(value)
    return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _episode_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """The episode rule's rows: its out-of-sample rate, or a word why there is none (no held-out reading to count
    on: the reason is printed under the table; a model trained before it was measured); its counted episodes
    and days only beside a rate."""
    return EPISODE_ROWS if metrics.get("episode_false_per_day_heldout") is not None else EPISODE_ROWS[:1]


def _cell(fmt: str, key: str, metrics: dict | None, quantized: bool = False) -> str:
    """A figure in its format; the episode rule's missing rate in words in the TFLite columns."""
    if metrics is None or key != EPISODE_ROWS[0][0] or metrics.get(key) is not None or not quantized:
        return _fmt(fmt, (metrics or {}).get(key))
    return "none: too short (see below)" if "episode_heldout_method" in metrics else "not measured (retrain)"


def sensor_rows(manifest: Manifest) -> list[tuple[str, ...]]:
    """The autoencoder's rows for a sensor CSV: its own columns, period and false-alert rates, no lecture figures;
    the episode rule's out-of-sample rate when the manifest plans that rule, then the k-of-n rule's figures."""
    int8 = manifest.models["autoencoder"]
    twin = manifest.models.get("autoencoder_float32")
    alerts = int8.postprocess.get("alerts", {})
    period = alerts.get("period_s")
    rule = f"{alerts['debounce_k']}-of-{alerts['debounce_n']} rule" if alerts else ""
    head = (f"{int8.dataset}: {', '.join(int8.preprocess['features'])}"
            + (f", a reading every {period:g} s" if period else ", no timestamps")
            + ("; the agent runs the episode rule planned for "
               f"{alerts['episode']['false_episodes_per_day']:g} false episodes/day (rows named k-of-n are the "
               f"older {rule}'s, which a commanded or configured threshold runs)" if alerts.get("episode") else
               f"; the agent runs the {rule}" if rule else ""))
    rows = [(f"AE data ({head})", "—", "—", "—", "—")]
    episode = _episode_rows(int8.metrics) if alerts.get("episode") else []
    for key, label, fmt in SENSOR_ROWS + episode + KOFN_ROWS:
        if (int8.metrics.get(key) is None and key != EPISODE_ROWS[0][0]) or \
                (key in OUT_OF_SAMPLE and "heldout_method" not in int8.metrics):
            continue  # not measured, or (a manifest from before issue 27) measured on the threshold's own slice
        rows.append((label, "—", _cell(fmt, key, int8.keras_metrics), _cell(fmt, key, int8.metrics, True),
                     _cell(fmt, key, twin.metrics if twin else None, True)))
    return rows


def sensor_warnings(manifest: Manifest) -> list[str]:
    """The alert plan's warnings (`edge.alerts.support`): a calibration too short, a deaf threshold; and the
    episode rule's: held-out readings too few to count on or to support its plan (`metrics.episode_heldout_warning`)."""
    entry = manifest.models.get("autoencoder")
    if entry is None:
        return []
    support = (entry.postprocess.get("alerts") or {}).get("support") or {}
    episode = entry.metrics.get("episode_heldout_warning")
    return [f"WARNING: {w}" for w in [*support.get("warnings", []), *([episode] if episode else [])]]


def results_table(manifest: Manifest) -> str:
    """The table; a column no row fills (the lecture's, for data that is not the lecture's) and notes for rows
    not in it are left out, and the quantized column names the variants it holds."""
    rows: list[tuple[str, ...]] = []
    sensors = "autoencoder" in manifest.models and manifest.models["autoencoder"].dataset != "lecture"
    for model, key, label, lecture, fmt in ROWS:
        if model not in manifest.models or (model == "autoencoder" and sensors):
            continue
        if key not in manifest.models[model].metrics and key not in manifest.models[model].keras_metrics:
            continue  # not measured on this file (the lecture's out-of-sample false alerts: since issue 27)
        int8 = manifest.models[model]
        twin = manifest.models.get(f"{model}_float32")
        if model == "cnn":  # the lecture's figure is for Fashion-MNIST only
            label = f"{label} ({int8.dataset})"
            lecture = lecture if int8.dataset == LECTURE_IMAGES else "—"
        if model == "lstm":  # units from the data; the lecture's figures are for its airline series only
            label = label.replace("passengers", str(int8.metrics.get("units", "values")))
            lecture = lecture if int8.dataset == "airline-passengers" else "—"
        rows.append((label, lecture, _fmt(fmt, int8.keras_metrics.get(key)), _fmt(fmt, int8.metrics.get(key)),
                     _fmt(fmt, twin.metrics.get(key) if twin else None)))
    if "lstm" in manifest.models and "baselines_rmse" in manifest.models["lstm"].metrics:
        metrics = manifest.models["lstm"].metrics
        names = metrics.get("baseline_names", {})
        shown = ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in metrics["baselines_rmse"].items())
        rows.append(("LSTM test-month baselines (RMSE)", "—", shown, f"best: {metrics['winner']}", "—"))
        if "test_coverage" in metrics:  # the residual recipe's bounds: share of test values inside them
            twin = manifest.models.get("lstm_float32")
            shares = [" / ".join(f"{v:.1%}" for v in m.get("test_coverage", {}).values()) or "—" for m in
                      (manifest.models["lstm"].keras_metrics, metrics, twin.metrics if twin else {})]
            rows.append((f"LSTM test-month interval coverage, {metrics.get('horizon', 'one step ahead')} "
                         "(80% / 95% nominal)", "—", *shares))
    if sensors:
        rows += sensor_rows(manifest)
    if "gan" in manifest.models:
        rows.append(("GAN sample grid",
                     "lecture's epoch 400 figure" if manifest.models["gan"].dataset == LECTURE_IMAGES else "—", "—",
                     f"reports/training/{manifest.models['gan'].metrics.get('sample_grid', '—')}", "—"))
    keep = [i for i in range(5) if i != 1 or any(r[1] != "—" for r in rows)]
    header = ("metric", "lecture", "Keras", "quantized TFLite²", "float32 TFLite")
    lines = ["| " + " | ".join(row[i] for i in keep) + " |" for row in [header, ("---",) * 5, *rows]]
    variants = [f"{name} {e.variant}" for name, e in sorted(manifest.models.items()) if e.variant != "float32"]
    notes = ([CNN_NOTE] if any("¹" in r[1] for r in rows) else []) + [
        "² The quantized file the edge runs: " + ", ".join(variants) + " (int16x8: int8 weights, int16 "
        "activations; see docs/DESIGN.md)."]
    notes += [note for mark, note in (("³", HOLDOUT_NOTE), ("⁴", EPISODE_NOTE)) if any(mark in r[0] for r in rows)]
    notes += sensor_warnings(manifest)
    sizes = [f"{name}: {e.size_bytes / 1024:.0f} KiB" for name, e in sorted(manifest.models.items())]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n\nFile sizes: " + ", ".join(sizes) + "\n"
