"""Regions of interest on a camera: crop, motion gate, debounced state, snapshots and capture.

A camera pointed at a door or a printer sees the thing of interest in a small part of the frame,
and nothing changes most of the time. What is wanted is a *state* ("open", "closed"), published
when it changes. These modules hold the parts (one job each); `edge.pipelines.camera` composes them.
"""
