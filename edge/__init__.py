"""Edge side of edgepipe: runs exported TFLite models with only a TFLite runtime, numpy and paho-mqtt.

Never import TensorFlow, Keras or scikit-learn here (tests enforce it)."""
