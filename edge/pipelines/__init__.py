"""Pipelines: one per configured input, sources -> preprocess -> model -> rule -> publish.

`base` holds what they share (the `Pipeline` protocol, counters, the reading worker), `publisher`
is how they publish, `registry` finds the kinds; every other module or sub-package here is one kind
(`camera`, `sensor`, `series`), found by its `KIND`.
"""
