"""Model updates over MQTT (docs/updates.md has the contract and the keys): signed bundles, chunked delivery,
versioned install, probation.

`chunks` is the wire format of a chunk (the shipper encodes with it), `receiver` assembles a bundle
from chunks, `bundle` verifies it (no TensorFlow: it runs on the Pi), `store` keeps versioned model
folders behind an atomic pointer, `probation` watches a fresh model, `updater` ties them to the agent.
"""
