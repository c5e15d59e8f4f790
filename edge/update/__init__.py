"""Model updates over MQTT (issue 16): signed bundles, chunked delivery, versioned install, probation.

`bundle` verifies a bundle (no TensorFlow: it runs on the Pi), `receiver` assembles one from
chunks, `store` keeps versioned model folders behind an atomic pointer, `probation` watches a
fresh model, `updater` ties them to the agent. docs/updates.md has the contract and the keys.
"""
