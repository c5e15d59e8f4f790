"""Everything that touches MQTT: the link (the one client), the durable outbox, and the message builders.

`messages` and `discovery` are pure (topic, payload, QoS, retain); `link` is the only place
that talks to the broker, and `outbox` keeps QoS 1 messages on disk until their PUBACK.
"""
