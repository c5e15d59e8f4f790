"""How a model file is measured: the task metrics on `.tflite` files (`evaluation`, shared by training and
the tests), the forecast baselines, the generator's judge (`gan`), the quality targets (`python -m training
evaluate`) and the results table (`python -m training table`). Reads files and data; trains nothing."""
