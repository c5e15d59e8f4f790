#!/usr/bin/env bash
# Install the edgepipe agent on a Raspberry Pi (Raspberry Pi OS Bookworm/Trixie, or Debian 12/13).
# Every option is checked before anything is changed; the usage text below is what --help prints.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo deploy/install-pi.sh [options]

Installs the edgepipe agent: apt packages, the system user `edgepipe`, the code, models and a venv
in the prefix, the config in /etc/edgepipe/agent.toml (kept if it exists), and the systemd service.

Options:
  --device-id ID     this device's name. Its topics are edgepipe/ID/..., and ID is also its user name
                     on the broker (the ACL in deploy/mosquitto/ relies on that). Letters, digits, _ and
                     -, at most 64, starting with a letter or digit. Default: the host name plus the
                     first 6 hex digits of /etc/machine-id (e.g. raspberrypi-3fa2c1), so two Pis left
                     with the stock host name never share an id.
  --with-mosquitto   also install mosquitto with deploy/mosquitto/ (no anonymous access, the ACL), and
                     create this agent's broker user: a random password in the broker's password file
                     (0640 root:mosquitto) and in /etc/edgepipe/mqtt-password (0640 root:edgepipe),
                     with mqtt.username and mqtt.password_file set in the agent's config; and
                     the ACL: the role sections of edgepipe.acl plus one section for this device
                     (and for every device installed here before), written by edgepipe-acl.sh.
  --prefix DIR       where the code, models and venv go (default /opt/edgepipe); the unit points there.
  --root DIR         install into DIR as if it were / (a trial install, or a test): every path goes
                     under DIR and the written files point inside it, so the agent can be run from
                     there. No apt, no user, no systemctl; files belong to the calling user.
  --no-start         enable the service but do not start it (automatic when systemd is not running,
                     e.g. in a chroot or a container).
  --dry-run          print every step, change nothing.
  -h, --help         this text.
EOF
}

die() { echo "install-pi.sh: $*" >&2; exit 2; }

DRY_RUN=0
WITH_MOSQUITTO=0
NO_START=0
DEVICE_ID=""
PREFIX=/opt/edgepipe
ROOT=""
SRC="$(cd "$(dirname "$0")/.." && pwd)"

while [ $# -gt 0 ]; do
  case "$1" in
    --device-id|--prefix|--root)
      # `--device-id` as the last word, or followed by another option, is a missing value
      if [ $# -lt 2 ] || [ -z "$2" ] || [ "${2#--}" != "$2" ]; then die "$1 needs a value (see --help)"; fi
      case "$1" in
        --device-id) DEVICE_ID="$2" ;;
        --prefix) PREFIX="$2" ;;
        --root) ROOT="$2" ;;
      esac
      shift ;;
    --dry-run) DRY_RUN=1 ;;
    --with-mosquitto) WITH_MOSQUITTO=1 ;;
    --no-start) NO_START=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

if [ -n "$ROOT" ]; then
  case "$ROOT" in /*) ;; *) die "--root must be an absolute path (got '$ROOT')" ;; esac
  ROOT="${ROOT%/}"
fi

# --- the device id: one naming rule for topics, broker user, ACL and Home Assistant -------------
machine_suffix() {  # 6 hex digits that differ between machines and stay put across reboots
  local id=""
  for f in "$ROOT/etc/machine-id" "$ROOT/var/lib/dbus/machine-id"; do
    if [ -s "$f" ]; then id="$(tr -dc '0-9a-f' <"$f")"; [ "${#id}" = 32 ] && break; fi
  done
  # an image not booted yet says "uninitialized": no id; a random one then (said so, stays in the config)
  if [ "${#id}" != 32 ]; then
    echo "# no machine id (/etc/machine-id) here: a random suffix instead" >&2
    id="$(tr -dc '0-9a-f' </proc/sys/kernel/random/uuid)"
  fi
  echo "${id:0:6}"
}

if [ -z "$DEVICE_ID" ]; then
  if [ -n "$ROOT" ] && [ -s "$ROOT/etc/hostname" ]; then host="$(head -n 1 "$ROOT/etc/hostname")"
  else host="$(hostname -s 2>/dev/null || cat /etc/hostname 2>/dev/null || echo edge)"; fi
  host="$(printf '%s' "$host" | tr -c 'A-Za-z0-9_-' '-' | sed -e 's/^-*//' -e 's/-*$//')"
  DEVICE_ID="${host:-edge}"
  DEVICE_ID="${DEVICE_ID:0:57}-$(machine_suffix)"
  echo "# no --device-id given: using $DEVICE_ID (host name + machine id; pass --device-id to choose)"
fi
if ! [[ "$DEVICE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ ]]; then
  die "--device-id must be 1-64 letters, digits, _ or -, starting with a letter or digit (got '$DEVICE_ID')"
fi
case "$DEVICE_ID" in
  homeassistant|sensors|viewer|updater|fleet)
    die "--device-id $DEVICE_ID is a role user of deploy/mosquitto/edgepipe.acl, not a device: choose another" ;;
esac
case "$PREFIX" in
  /*) ;;
  *) die "--prefix must be an absolute path (got '$PREFIX')" ;;
esac
case "$PREFIX" in
  /|/home|/home/*|/root|/root/*) die "--prefix $PREFIX: the service runs with ProtectHome=yes and needs its own folder (e.g. /opt/edgepipe)" ;;
esac
if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo), or with --dry-run to see the steps, or with --root DIR for a trial install"
fi

# --- where things go (under --root everything moves, and the written files follow) -------------
PREFIX="$ROOT$PREFIX"
CONF_DIR="$ROOT/etc/edgepipe"
STATE_DIR="$ROOT/var/lib/edgepipe"
UNIT_DIR="$ROOT/etc/systemd/system"
MOSQ_DIR="$ROOT/etc/mosquitto"
# the service always runs as `edgepipe` (UNIT_USER, written into the unit); under --root, where no user is
# created, the files belong to the caller instead (a unit naming the caller would name `nobody` or `root`
# when a test runs as them, which systemd refuses or should)
UNIT_USER=edgepipe; UNIT_GROUP=edgepipe
if [ -n "$ROOT" ]; then
  SVC_USER="$(id -un)"; SVC_GROUP="$(id -gn)"; OWNER="$SVC_USER"; BROKER_GROUP="$SVC_GROUP"
else
  SVC_USER=$UNIT_USER; SVC_GROUP=$UNIT_GROUP; OWNER=root; BROKER_GROUP=mosquitto
fi
SYSTEMD_RUNNING=0
[ -z "$ROOT" ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1

step() {  # print a step, and run it unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

echo "# edgepipe install: source $SRC, prefix $PREFIX, device_id $DEVICE_ID${ROOT:+, root $ROOT}"

if [ -z "$ROOT" ]; then
  echo "# 1. system packages (python3-picamera2 comes only from Raspberry Pi OS's apt archive;"
  echo "#    python3-cryptography checks signed model bundles: from apt, no Rust build on the Pi)"
  packages=(python3-venv python3-cryptography)
  step apt-get update
  if [ "$DRY_RUN" = 1 ] || apt-cache policy python3-picamera2 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    packages+=(python3-picamera2)
  else
    echo "# python3-picamera2 is not in this system's apt sources (not Raspberry Pi OS?):"
    echo "# the picamera2 camera source will be unavailable; opencv:, folder: and replay: still work"
  fi
  [ "$WITH_MOSQUITTO" = 1 ] && packages+=(mosquitto mosquitto-clients)
  step env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"

  echo "# 2. a dedicated system user (in group video for the camera)"
  if [ "$DRY_RUN" = 1 ] || ! id "$SVC_USER" >/dev/null 2>&1; then
    step useradd --system --user-group --home-dir /var/lib/edgepipe --shell /usr/sbin/nologin --groups video "$SVC_USER"
  fi
else
  echo "# 1-2. --root: no apt packages and no system user (files belong to $SVC_USER)"
fi
step install -d -m 0755 "$PREFIX"
step install -d -m 0750 -o "$SVC_USER" -g "$SVC_GROUP" "$STATE_DIR"
step install -d -m 0750 -o "$OWNER" -g "$SVC_GROUP" "$CONF_DIR"

echo "# 3. the code, the models and a venv that sees apt's picamera2 (--system-site-packages)"
step rm -rf "$PREFIX/edge" "$PREFIX/models" "$PREFIX/schemas"
step cp -r "$SRC/edge" "$SRC/models" "$SRC/schemas" "$SRC/pyproject.toml" "$SRC/README.md" "$PREFIX/"
step install -d -m 0755 "$PREFIX/deploy/mosquitto"
step install -m 0755 "$SRC/deploy/mosquitto/edgepipe-acl.sh" "$PREFIX/deploy/mosquitto/"
step install -m 0644 "$SRC/deploy/mosquitto/agent.acl" "$PREFIX/deploy/mosquitto/"
step python3 -m venv --system-site-packages "$PREFIX/.venv"
step "$PREFIX/.venv/bin/pip" install --quiet "$PREFIX[edge]"

write_config() {  # the example config with this device's paths and names
  local conf="$1" tmp
  tmp="$(mktemp)"
  sed -e "s|^device_id = .*|device_id = \"$DEVICE_ID\"|" \
      -e "s|^models_dir = .*|models_dir = \"$PREFIX/models\"|" \
      -e "s|^state_dir = .*|state_dir = \"$STATE_DIR\"|" \
      -e "s|^client_id = .*|client_id = \"edgepipe-$DEVICE_ID-$(machine_suffix)\"  # unique per machine|" \
      "$SRC/deploy/agent.example.toml" >"$tmp"
  if [ "$WITH_MOSQUITTO" = 1 ]; then
    sed -i -e "s|^username = .*|username = \"$DEVICE_ID\"            # = device_id: the ACL's rule|" \
           -e "s|^password_file = .*|password_file = \"$CONF_DIR/mqtt-password\"|" "$tmp"
  fi
  install -m 0640 -o "$OWNER" -g "$SVC_GROUP" "$tmp" "$conf"
  rm -f "$tmp"
}

echo "# 4. the config (kept if it exists)"
if [ ! -f "$CONF_DIR/agent.toml" ] || [ "$DRY_RUN" = 1 ]; then
  step write_config "$CONF_DIR/agent.toml"
  echo "#    $CONF_DIR/agent.toml: device_id = \"$DEVICE_ID\", models in $PREFIX/models, state in $STATE_DIR"
else
  echo "# kept $CONF_DIR/agent.toml (remove it to get a fresh one)"
  if [ "$WITH_MOSQUITTO" = 1 ] && { ! grep -q "^username = \"$DEVICE_ID\"" "$CONF_DIR/agent.toml" \
      || ! grep -q "^device_id = \"$DEVICE_ID\"" "$CONF_DIR/agent.toml"; }; then
    echo "# NOTE: it is not set up for device \"$DEVICE_ID\": set device_id = \"$DEVICE_ID\"," \
         "mqtt.username = \"$DEVICE_ID\" and mqtt.password_file = \"$CONF_DIR/mqtt-password\" there" \
         "(the broker user must be the device id: the ACL grants user X only edgepipe/X/...), or the broker" \
         "refuses the agent or silently drops what it publishes"
  fi
fi

secret_owner() {  # SECRET BROKER-FILE USER: the broker user the agent's password file belongs to ("" if unknown)
  if [ -s "$1.user" ]; then cat "$1.user"; return; fi
  # an install from before the .user file: USER's, if the broker file has USER (a re-run with the same id)
  if [ -f "$2" ] && grep -q "^$3:" "$2"; then echo "$3"; fi
}

add_broker_user() {  # USER BROKER-FILE AGENT-FILE: a random password, hashed for the broker, plain for the agent
  local user="$1" passwd="$2" secret="$3" entry merged password owner
  umask 077
  owner="$(secret_owner "$secret" "$passwd" "$user")"
  if [ -s "$secret" ] && [ "$owner" != "$user" ]; then
    # a re-run with another --device-id: this user gets its own password (one password for two users would let
    # either device log in as the other); the old user keeps its old one in the broker's file
    echo "# $secret held the password of broker user \"${owner:-unknown}\": a new one for \"$user\"" \
         "(remove the old user with: sudo mosquitto_passwd -D $passwd ${owner:-OLD-USER})"
    rm -f "$secret"
  fi
  if [ ! -s "$secret" ]; then
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$secret"
  fi
  printf '%s\n' "$user" >"$secret.user"
  chown "$OWNER:$SVC_GROUP" "$secret" "$secret.user"
  chmod 0640 "$secret"
  password="$(cat "$secret")"
  entry="$(mktemp)"; merged="$(mktemp)"
  printf '%s:%s\n' "$user" "$password" >"$entry"
  mosquitto_passwd -U "$entry"  # hashes it in place: the password never appears on a command line
  if [ -f "$passwd" ]; then grep -v "^$user:" "$passwd" >"$merged" || true; fi
  cat "$entry" >>"$merged"
  install -m 0640 -o "$OWNER" -g "$BROKER_GROUP" "$merged" "$passwd"
  rm -f "$entry" "$merged"
  umask 022
}

install_acl() {  # ACL: the shipped role sections, then a section per device: those installed here before, and this one
  local acl="$1" tmp device devices=""
  [ -f "$acl" ] && devices="$(sed -n 's/^# --- agent \([A-Za-z0-9_-]*\) .*/\1/p' "$acl")"
  tmp="$(mktemp)"
  cat "$SRC/deploy/mosquitto/edgepipe.acl" >"$tmp"
  for device in $devices "$DEVICE_ID"; do
    bash "$SRC/deploy/mosquitto/edgepipe-acl.sh" "$tmp" "$device" >/dev/null
  done
  install -m 0640 -o "$OWNER" -g "$BROKER_GROUP" "$tmp" "$acl"
  rm -f "$tmp"
}

if [ "$WITH_MOSQUITTO" = 1 ]; then
  echo "# 5. mosquitto: no anonymous access, the ACL, and the broker user \"$DEVICE_ID\" for this agent"
  step install -d -m 0755 "$MOSQ_DIR/conf.d"
  step install -m 0644 "$SRC/deploy/mosquitto/edgepipe.conf" "$MOSQ_DIR/conf.d/edgepipe.conf"
  if [ -n "$ROOT" ]; then
    step sed -i -e "/^[^#]/s|/etc/mosquitto/|$MOSQ_DIR/|g" "$MOSQ_DIR/conf.d/edgepipe.conf"
  fi
  step install_acl "$MOSQ_DIR/edgepipe.acl"
  step add_broker_user "$DEVICE_ID" "$MOSQ_DIR/edgepipe.passwd" "$CONF_DIR/mqtt-password"
  echo "#    add Home Assistant's user with: sudo mosquitto_passwd $MOSQ_DIR/edgepipe.passwd homeassistant"
  echo "#    (other roles of the ACL: sensors, viewer, updater, fleet; then: sudo systemctl reload mosquitto)"
  echo "#    another device's agent on this broker: sudo $PREFIX/deploy/mosquitto/edgepipe-acl.sh" \
       "$MOSQ_DIR/edgepipe.acl OTHER-ID, and its user as above"
  if [ "$SYSTEMD_RUNNING" = 1 ]; then step systemctl restart mosquitto; fi
fi

write_unit() {  # the unit with this install's paths and user
  sed -e "s|/opt/edgepipe|$PREFIX|g" -e "s|/etc/edgepipe|$CONF_DIR|g" -e "s|/var/lib/edgepipe|$STATE_DIR|g" \
      -e "s|^User=.*|User=$UNIT_USER|" -e "s|^Group=.*|Group=$UNIT_GROUP|" \
      "$SRC/deploy/edgepipe.service" >"$1"
  chmod 0644 "$1"
}

echo "# 6. the systemd service"
step install -d -m 0755 "$UNIT_DIR"
step write_unit "$UNIT_DIR/edgepipe.service"
if command -v systemd-analyze >/dev/null 2>&1 && [ -z "$ROOT" ]; then
  step systemd-analyze verify "$UNIT_DIR/edgepipe.service"
fi
if [ -n "$ROOT" ]; then
  echo "# --root: not enabled. Run it from here with:"
  echo "#   $PREFIX/.venv/bin/python -m edge run --config $CONF_DIR/agent.toml"
elif [ "$SYSTEMD_RUNNING" = 1 ] && [ "$NO_START" = 0 ]; then
  step systemctl daemon-reload
  step systemctl enable --now edgepipe.service
  echo "# done: journalctl -u edgepipe -f   |   python -m edge subscribe --host localhost"
else
  step systemctl enable edgepipe.service
  if [ "$SYSTEMD_RUNNING" = 0 ]; then
    echo "# systemd is not running here (chroot or container): enabled, not started;" \
         "it starts at the next boot (or: systemctl start edgepipe)"
  else
    echo "# --no-start: enabled, not started (systemctl start edgepipe)"
  fi
fi
