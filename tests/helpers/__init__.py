"""What the test modules share: brokers, subscribers and the agent as a subprocess (`mqtt`), a Pi-like Python
without TensorFlow (`isolation`), the forecaster run offline (`series`). Test modules import from here, never
from each other."""
