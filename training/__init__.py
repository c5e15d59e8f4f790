"""Host side of edgepipe: datasets, the four lecture models, training, TFLite export and verification."""
