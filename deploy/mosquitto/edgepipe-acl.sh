#!/usr/bin/env bash
# Add (or renew) one agent's section in a mosquitto ACL: `user <device_id>` with the topics of agent.acl.
#   edgepipe-acl.sh ACL_FILE DEVICE_ID
# install-pi.sh --with-mosquitto runs it for its device; run it by hand for each further device whose agent
# logs in to this broker (the central broker of a bridged fleet, a NATS-less site broker), then
# `sudo systemctl reload mosquitto`. Re-running it replaces the device's section; other lines are kept.
# The ACL has no `pattern` lines on purpose: they would grant an agent's rights to every user (edgepipe.acl).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="${EDGEPIPE_AGENT_ACL:-$here/agent.acl}"
die() { echo "edgepipe-acl.sh: $*" >&2; exit 2; }
[ $# -eq 2 ] || die "usage: edgepipe-acl.sh ACL_FILE DEVICE_ID"
acl="$1" device="$2"
[[ "$device" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ ]] \
  || die "DEVICE_ID must be 1-64 letters, digits, _ or -, starting with a letter or digit (got '$device')"
case "$device" in
  homeassistant|sensors|viewer|updater|fleet) die "$device is a role user of edgepipe.acl, not a device" ;;
esac
[ -r "$template" ] || die "cannot read the agent template $template"
[ -f "$acl" ] || die "no ACL file $acl (install edgepipe.acl there first)"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
# everything but this device's old section, then the new one
awk -v begin="# --- agent $device " -v end="# --- end agent $device" '
  index($0, begin) == 1 { skip = 1 }
  !skip { print }
  skip && $0 == end { skip = 0 }
' "$acl" >"$tmp"
[ -z "$(tail -c 1 "$tmp")" ] || echo >>"$tmp"
sed -e "s/{device_id}/$device/g" "$template" >>"$tmp"
cat "$tmp" >"$acl"  # in place: the file keeps its owner and mode (0640 root:mosquitto)
echo "edgepipe-acl.sh: $acl: agent section for $device"
