"""Every loader, and every error path says what was expected and where."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import requires_package, write_idx
from training.datasets import DatasetError, lecture_sensor_data, load_image_dataset, load_sensor_csv, load_series_csv
from training.datasets.images import load_idx_folder, read_idx, upscale_digits
from training.datasets.sensors import load_sensors
from training.datasets.series import AIRLINE_CSV, load_series


def test_idx_folder_loads_gz_and_plain(idx_folder: Path) -> None:
    data = load_image_dataset(f"mnist:{idx_folder}")
    assert data.x_train.shape == (20, 28, 28) and data.x_test.shape == (10, 28, 28)
    assert data.y_train.tolist() == [i % 10 for i in range(20)]
    assert data.labels == [str(i) for i in range(10)]


def test_idx_bad_magic_is_named(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DatasetError, match=r"x: not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "x")


def test_idx_truncated_data_is_named(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((3, 4, 4)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"header says \(3, 4, 4\) = 48 bytes of data, file has 43"):
        read_idx(path)


def test_idx_folder_missing_file_is_named(idx_folder: Path) -> None:
    (idx_folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"expected IDX file t10k-labels-idx1-ubyte"):
        load_idx_folder(idx_folder, "mnist", [str(i) for i in range(10)])


def test_idx_labels_that_do_not_pair_up(idx_folder: Path) -> None:
    write_idx(idx_folder / "t10k-labels-idx1-ubyte", np.arange(7))
    with pytest.raises(DatasetError, match=r"test images \(10, 28, 28\) and labels \(7,\) do not pair up"):
        load_image_dataset(f"mnist:{idx_folder}")


@requires_package("dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package() -> None:
    data = load_image_dataset("fashion_mnist")
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.labels[9] == "Ankle boot"


def test_digits_are_upscaled_to_mnist_size() -> None:
    data = load_image_dataset("digits")
    assert data.x_train.shape[1:] == (28, 28) and data.x_train.dtype == np.uint8
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.max() == 255
    # a 2-pixel empty margin, like MNIST's
    assert data.x_train[:, :2, :].max() == 0 and data.x_train[:, :, -2:].max() == 0


def test_upscale_keeps_the_picture() -> None:
    eight = np.zeros((1, 8, 8))
    eight[0, 0, 0] = 16
    big = upscale_digits(eight)
    assert big[0, 2:5, 2:5].min() == 255 and big[0].sum() == 255 * 9


def make_image_folder(root: Path) -> Path:
    for cls, value in (("cats", 30), ("dogs", 220)):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((40, 50, 3), value, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_one_class_per_subfolder(tmp_path: Path) -> None:
    data = load_image_dataset(f"folder:{make_image_folder(tmp_path / 'imgs')}")
    assert data.labels == ["cats", "dogs"]
    assert data.x_train.shape[1:] == (28, 28) and len(data.x_train) + len(data.x_test) == 10
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    # the edge's gray levels (float luma weights): 30 * (0.299 + 0.587 + 0.114) in float32 is 30.000002
    assert np.allclose(x[y == 0], 30, atol=1e-4) and np.allclose(x[y == 1], 220, atol=1e-4)


def test_image_folder_unreadable_image_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs")
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read image"):
        load_image_dataset(f"folder:{root}")


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="at least two class sub-folders"):
        load_image_dataset(f"folder:{tmp_path}")


def test_unknown_image_dataset_lists_choices() -> None:
    with pytest.raises(DatasetError, match=r"use fashion_mnist\[:DIR\], mnist\[:DIR\], digits or folder:DIR"):
        load_image_dataset("cifar")


def test_airline_series_is_the_lectures() -> None:
    series = load_series("airline")
    assert series.column == "Passengers" and len(series.values) == 144
    assert series.values[:3].tolist() == [112, 118, 132] and series.values[-1] == 432
    assert AIRLINE_CSV.parent.name == "data"


def test_series_column_by_name(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("t,temp,hum\n1,20.5,40\n2,21.0,41\n")
    assert load_series_csv(tmp_path / "s.csv", "hum").values.tolist() == [40, 41]
    assert load_series(f"{tmp_path / 's.csv'}:temp").values.tolist() == [20.5, 21.0]


def test_series_unknown_column_lists_the_header(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("t,temp\n1,20.5\n")
    with pytest.raises(DatasetError, match=r"column\(s\) \['pressure'\] not in the header; available: \['t', 'temp'\]"):
        load_series_csv(tmp_path / "s.csv", "pressure")


def test_series_bad_value_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("t,temp\n1,20.5\n2,n/a\n")
    with pytest.raises(DatasetError, match=r"s\.csv: line 3, column 'temp': expected a finite number, got 'n/a'"):
        load_series_csv(tmp_path / "s.csv", "temp")


def test_series_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv: series CSV not found"):
        load_series_csv(tmp_path / "nope.csv")


def test_lecture_sensor_data_matches_the_lecture_recipe() -> None:
    data = lecture_sensor_data()
    assert data.train.shape == (10000, 2) and data.validation.shape == (2000, 2)
    x, y = data.train[:, 0], data.train[:, 1]
    assert np.all(np.abs(y - (2 * x - 1)) <= 0.1 + 1e-6)  # DATA_NOISE
    noisy = data.anomalous["noisy"]
    assert np.array_equal(noisy[:, 0], x) and np.abs(noisy[:, 1] - (2 * x - 1)).max() > 0.25  # TEST_NOISE 0.3
    wrong = data.anomalous["wrong"]
    assert np.all(np.abs(wrong[:, 1] - (1.5 * x - 1)) <= 0.1 + 1e-6)
    again = lecture_sensor_data()
    assert np.array_equal(again.train, data.train)  # same seed, same data
    assert not np.array_equal(lecture_sensor_data(seed=1).train, data.train)


def test_sensor_csv_splits_normal_period(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 0.1:.1f},{20 + i % 3}" for i in range(100))
    (tmp_path / "s.csv").write_text("ts,a,b\n" + rows + "\n")
    data = load_sensor_csv(tmp_path / "s.csv", ["a", "b"], normal_rows=80)
    assert data.features == ["a", "b"] and data.train.shape == (64, 2) and data.validation.shape == (16, 2)
    assert data.anomalous["after"].shape == (20, 2)
    assert load_sensors(f"{tmp_path / 's.csv'}:b").features == ["b"]


def test_sensor_csv_too_few_rows(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("a\n1\n2\n")
    with pytest.raises(DatasetError, match="too few"):
        load_sensor_csv(tmp_path / "s.csv")


def test_sensor_csv_short_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(DatasetError, match=r"line 3, column 'b': expected a finite number, got ''"):
        load_sensor_csv(tmp_path / "s.csv")
