"""The models: the manifest contract, the TFLite runtime, golden vectors, the loader and the wrappers.

What the trainer shares with the agent lives here and imports nothing of the pipeline stack or paho:
`manifest` (the contract both sides read), `runtime` (the shim and `TFLiteModel`), `golden`,
`classifier` (with the frame preprocessing), `sensor_window` (the autoencoder's input builder) and
`series_transform` (what the LSTM sees). `loader.ModelLoader` hands pipeline kinds verified models;
`wrapper` is what every model wrapper shares.
"""
