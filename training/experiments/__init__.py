"""Runs outside `make test` that write figures into docs/ or data into data/: the recipes on real public
data (`realdata`, `realdata_sensors`), the Keras-vs-TFLite benchmark (`bench`) and the demo's sample data
(`sample_data`). Each trains or measures through the rest of `training`; nothing imports them."""
