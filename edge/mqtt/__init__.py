"""The transport: the one MQTT client, the durable outbox, and the messages every agent sends.

`link` is the only place that talks to the broker (`client` makes the paho client, `inbox` routes
what comes in, `takeover` notices another client with our id), `outbox` keeps QoS 1 messages on
disk until their PUBACK, `messages` builds the envelope, `status`, `error`, command results and
`stats` (pure: topic, payload, QoS, retain), `config` is `[mqtt]` and `[outbox]`. It imports
nothing above it: what a pipeline kind or Home Assistant sends is built where they live.
"""
