"""`python -m training realdata series|images|sensors`: the default recipes on real public data that ships
offline with the training dependencies, through the project's own CLI; prints the markdown tables
of docs/real-data.md. Slow (minutes per dataset): not part of `make test`.

Series (statsmodels' bundled data, real measurements, never tuned on):
- `co2`: Mauna Loa CO2, weekly 1958-2001 averaged to months, 1980-2001 -- strong trend and yearly cycle.
- `elnino`: Pacific sea-surface temperature by month 1950-2010 -- seasonal, no trend.
- `elec_equip`: EU electrical-equipment orders by month 1995-2016, not seasonally adjusted --
  season plus business cycle (the 2008 crash falls in the test months).
- `us_unemployment`: US unemployment rate by quarter 1959-2009 (macrodata; seasonally adjusted at the
  source, so the quarterly season is weak) -- cycles, no trend.
- `airline`: the lecture's series, for reference.
Images (folders written as PNG files in class sub-folders, trained through `--dataset folder:DIR`):
see `FOLDERS`; `photos` and `textures` need scikit-image (`pip install scikit-image`), which ships them.
Sensors: the autoencoder on real recordings, `realdata_sensors.py` (its own options).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.models.manifest import read_manifest
from training.cli import main as train
from training.experiments import realdata_sensors

log = logging.getLogger(__name__)


def co2_monthly() -> tuple[list[str], np.ndarray]:
    """1980-2001 only: 264 months keep a run within minutes on 2 cores (the LSTM trains at batch 1)."""
    from statsmodels.datasets import co2

    monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()["1980":]
    return [d.strftime("%Y-%m") for d in monthly.index], monthly.to_numpy()


def unemployment_quarterly() -> tuple[list[str], np.ndarray]:
    from statsmodels.datasets import macrodata

    table = macrodata.load_pandas().data
    return [f"{int(y)}Q{int(q)}" for y, q in zip(table["year"], table["quarter"])], table["unemp"].to_numpy()


def elnino_monthly() -> tuple[list[str], np.ndarray]:
    from statsmodels.datasets import elnino

    table = elnino.load_pandas().data
    months = table.columns[1:]
    dates = [f"{int(year)}-{m + 1:02d}" for year in table["YEAR"] for m in range(len(months))]
    return dates, table[months].to_numpy().ravel()


def elec_equip_monthly() -> tuple[list[str], np.ndarray]:
    from statsmodels.datasets import elec_equip

    data = elec_equip.load()
    frame = getattr(data, "data", data)
    return [d.strftime("%Y-%m") for d in frame.index], frame.iloc[:, 0].to_numpy()


def airline_monthly() -> tuple[list[str], np.ndarray]:
    from training.datasets.series import load_series

    values = load_series("airline").values
    return [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in range(len(values))], values


SERIES: dict[str, tuple[Callable[[], tuple[list[str], np.ndarray]], str]] = {
    "co2": (co2_monthly, "ppm"),
    "elnino": (elnino_monthly, "deg C"),
    "elec_equip": (elec_equip_monthly, "index"),
    "us_unemployment": (unemployment_quarterly, "%"),
    "airline": (airline_monthly, "passengers"),
}


def write_series_csv(path: Path, dates: list[str], values: np.ndarray) -> None:
    lines = ["month,value", *(f"{d},{float(v):.6g}" for d, v in zip(dates, values))]
    path.write_text("\n".join(lines) + "\n")


def series_row(name: str, work: Path) -> str:
    """Train the default profile (auto) and the old default transform; one markdown row."""
    loader, units = SERIES[name]
    dates, values = loader()
    csv = work / f"{name}.csv"
    write_series_csv(csv, dates, values)
    results = {}
    for label, extra in (("auto", []), ("old", ["--transform", "log+d1+d12"])):
        out = work / f"{name}-{label}"
        code = train(["lstm", "--dataset", f"{csv}:value", "--out", str(out), "--report", str(work / "report"),
                      *extra])
        results[label] = read_manifest(out / "manifest.json").get("lstm") if code == 0 else None
    auto = results["auto"]
    assert auto is not None, f"{name}: training failed"
    m, base = auto.metrics, auto.metrics["baselines_rmse"]
    old = f"{results['old'].metrics['test_rmse']:.3g}" if results["old"] else "refused"
    cells = [name, str(len(values)), f"{m['test_months']}", auto.training["transform"], f"{m['test_rmse']:.3g}", old,
             *(f"{base[k]:.3g}" if k in base else "—" for k in ("persistence", "seasonal_naive", "naive_growth",
                                                                  "sarima")), m["winner"]]
    return "| " + " | ".join(cells) + " |"


SERIES_HEADER = ("| series | months | test months | auto transform | LSTM (auto) | LSTM log+d1+d12 | persistence "
              "y[t-1] | seasonal naive y[t-s] | naive growth | SARIMA(0,1,1)(0,1,1)s on log | best |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def save_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def digits_folder(root: Path, size: int | None = None, shuffle_labels: bool = False) -> None:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 gray levels) as PNGs in class folders; `size`: an
    upscaled RGB copy (bicubic, as a phone photo of the digit would be smooth); `shuffle_labels`: the same
    images under random labels (a model must then be refused)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = np.random.default_rng(0).permutation(digits.target) if shuffle_labels else digits.target
    for i, (image, label) in enumerate(zip(digits.images, labels)):
        pixels = np.clip(image * 255 / 16, 0, 255).astype(np.uint8)
        if size:
            big = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
            pixels = np.asarray(big)
        save_png(root / str(label) / f"{i:04d}.png", pixels)


def tiles(image: np.ndarray, side: int) -> list[np.ndarray]:
    """Non-overlapping side x side tiles (no tile shares a pixel with another: no near-duplicates across
    the trainer's train/test split)."""
    rows, cols = image.shape[0] // side, image.shape[1] // side
    return [image[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(rows) for c in range(cols)]


def texture_folder(root: Path) -> None:
    """scikit-image's brick, grass and gravel photographs (512x512 gray) cut into 32x32 tiles."""
    from skimage import data

    for name in ("brick", "grass", "gravel"):
        for i, tile in enumerate(tiles(getattr(data, name)(), 32)):
            save_png(root / name / f"{i:03d}.png", tile)


def photo_folder(root: Path) -> None:
    """Six colour photographs -- scikit-image's astronaut, coffee, chelsea (a cat), rocket and scikit-learn's
    china and flower -- cut into 48x48 RGB tiles; the class is the photograph a tile comes from."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
    photos.update({Path(f).stem: img for f, img in zip(load_sample_images().filenames, load_sample_images().images)})
    for name, photo in photos.items():
        for i, tile in enumerate(tiles(photo, 48)):
            save_png(root / name / f"{i:03d}.png", np.ascontiguousarray(tile))


FOLDERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "digits8": (digits_folder, "scikit-learn digits, 8x8 gray PNGs, 10 classes"),
    "digits64rgb": (lambda root: digits_folder(root, size=64), "the same digits upscaled to 64x64 RGB"),
    "textures": (texture_folder, "scikit-image brick/grass/gravel photos, 32x32 tiles, 3 classes"),
    "photos": (photo_folder, "six colour photos (scikit-image, scikit-learn), 48x48 tiles, 6 classes"),
    "digits8-shuffled": (lambda root: digits_folder(root, shuffle_labels=True), "digits under random labels"),
}


def image_row(name: str, work: Path) -> str:
    make, description = FOLDERS[name]
    folder = work / name
    make(folder)
    out = work / f"{name}-models"
    code = train(["cnn", "--dataset", f"folder:{folder}", "--out", str(out), "--report", str(work / "report")])
    count = sum(1 for _ in folder.rglob("*.png"))
    classes = sum(1 for p in folder.iterdir() if p.is_dir())
    if code != 0:
        left = sorted(p.name for p in out.glob("*")) if out.exists() else []
        return (f"| {name} | {description} | {count} | {classes} | refused (exit {code}) | — | — | — | — | "
                f"files left: {', '.join(left) or 'none'} |")
    entry = read_manifest(out / "manifest.json").get("cnn")
    m = entry.metrics
    return (f"| {name} | {description} | {count} | {classes} | exported | {m['test_samples']} | {m['chance']:.1%} | "
            f"{entry.keras_metrics['best_validation_accuracy']:.1%} | {m['accuracy']:.1%} | "
            f"{m['recipe']['epochs_run']} of {m['recipe']['epochs']} epochs x {m['recipe']['steps_per_epoch']} steps |")


IMAGES_HEADER = ("| folder | what | images | classes | result | held-out images | chance | Keras best validation | "
              "int8 file held-out accuracy | recipe |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sensors"]:
        return realdata_sensors.main(argv)
    parser = argparse.ArgumentParser(prog="python -m training realdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["series", "images", "sensors"], help="sensors: see `realdata sensors --help`")
    parser.add_argument("--only", nargs="*", help="a subset of the datasets")
    parser.add_argument("--output", type=Path, help="also append the table (header first) to this file, row by "
                        "row as each dataset finishes (Keras prints its epochs on stdout)")
    args = parser.parse_args(argv)
    if args.part == "sensors":
        parser.error("name the part first: python -m training realdata sensors [its options]")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    header, row, names = ((SERIES_HEADER, series_row, list(SERIES)) if args.part == "series" else
                          (IMAGES_HEADER, image_row, list(FOLDERS)))
    lines = [header]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or names:
            lines.append(row(name, Path(tmp)))
            if args.output:
                args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
