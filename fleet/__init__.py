"""Host side of model updates: signing keys, signed bundles and shipping them over MQTT (`python -m fleet`).

No TensorFlow here: an operator ships models from a machine with only the edge's dependencies
(`cryptography`, `paho-mqtt`). Imports `edge` only (the bundle format and the manifest it checks).
"""
