"""Dataset loaders: images (MNIST, Fashion-MNIST, digits, your folders), series and sensor data.

Every loader returns plain numpy arrays in small dataclasses and raises `DatasetError`
with the file, line and column and a hint on how to get the data when something is wrong.
"""

from training.datasets.errors import DatasetError
from training.datasets.images import ImageDataset, load_image_dataset
from training.datasets.sensors import SensorData, lecture_sensor_data, load_sensor_csv
from training.datasets.series import SeriesData, load_series_csv

__all__ = [
    "DatasetError",
    "ImageDataset",
    "SensorData",
    "SeriesData",
    "lecture_sensor_data",
    "load_image_dataset",
    "load_sensor_csv",
    "load_series_csv",
]
