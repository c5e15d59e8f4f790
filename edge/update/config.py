"""`[update]`: model updates over MQTT (docs/updates.md). Off unless enabled; refused unless a key is trusted."""

from __future__ import annotations

from dataclasses import dataclass

from edge.fields import ConfigError, setting
from edge.update.bundle import parse_trusted


@dataclass
class UpdateConfig:
    enabled: bool = False  # subscribe to `update/chunk` and accept signed bundles
    trusted_keys: str = ""  # base64 Ed25519 public keys, space or comma separated (two during a rotation)
    max_bundle_mb: float = setting(64.0, gt=0, le=4096)  # a larger bundle is refused before a byte is stored
    probation_s: float = setting(600.0, ge=0)  # watch a new model this long before it becomes `active`
    max_latency_ratio: float = setting(3.0, gt=1)  # roll back if the mean latency grows beyond this x the old one's
    max_error_ratio: float = setting(0.05, ge=0, le=1)  # roll back if more than this share of inputs fail
    max_alert_ratio: float = setting(5.0, gt=1)  # roll back if alerts exceed this x the manifest's false-alert rate
    min_alerts: int = setting(5, ge=1)  # ... and at least this many alerts were seen (no verdict on one alert)

    def validate(self) -> None:
        try:
            keys = parse_trusted(self.trusted_keys)
        except ValueError as exc:
            raise ConfigError(f"trusted_keys: expected base64 Ed25519 public keys ({exc})") from None
        if self.enabled and not keys:
            raise ConfigError("trusted_keys: [update] is enabled but trusts no key, so every bundle would be "
                              "refused; expected at least one: the public key `python -m fleet keygen` printed")
