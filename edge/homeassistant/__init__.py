"""Home Assistant: an integration beside the MQTT transport, not inside it (mqtt-io's `home_assistant.py`).

`discovery` builds the discovery messages (pure functions: each pipeline kind and the updater build
their entities with them); `announcer` sends them with the current states on every connect and on
Home Assistant's birth message, and clears the entities no longer configured. Neither knows a
pipeline kind: the agent hands the announcer its configs and states as callables.
"""
