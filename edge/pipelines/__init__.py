"""Pipelines: one per configured input, sources -> preprocess -> model -> rule -> publish.

`base` holds what they share (the `Pipeline` protocol, counters, the reading worker),
`registry` finds the kinds; every other module here is one kind (camera, sensor, series).
"""
