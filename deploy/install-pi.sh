#!/usr/bin/env bash
# Install the edgepipe agent on a Raspberry Pi (Raspberry Pi OS Bookworm/Trixie), as root:
#   sudo deploy/install-pi.sh [--with-mosquitto] [--device-id NAME] [--dry-run]
# --dry-run prints every step without doing anything (CI runs it that way).
set -euo pipefail

DRY_RUN=0
WITH_MOSQUITTO=0
DEVICE_ID="$(hostname -s 2>/dev/null || echo edge)"
PREFIX=/opt/edgepipe
CONF_DIR=/etc/edgepipe
STATE_DIR=/var/lib/edgepipe
SRC="$(cd "$(dirname "$0")/.." && pwd)"

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --with-mosquitto) WITH_MOSQUITTO=1 ;;
    --device-id) DEVICE_ID="$2"; shift ;;
    --prefix) PREFIX="$2"; shift ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

step() {  # print a step, and run it unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "run as root (sudo), or with --dry-run to see the steps" >&2
  exit 1
fi

echo "# edgepipe install: source $SRC, prefix $PREFIX, device_id $DEVICE_ID"
echo "# 1. system packages (picamera2 comes only from Raspberry Pi OS apt)"
packages=(python3-venv python3-picamera2)
[ "$WITH_MOSQUITTO" = 1 ] && packages+=(mosquitto mosquitto-clients)
step apt-get update
step apt-get install -y "${packages[@]}"

echo "# 2. a dedicated user and the directories"
if ! id edgepipe >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ]; then
  step useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin --groups video edgepipe
fi
step install -d -m 0755 "$PREFIX"
step install -d -m 0750 -o edgepipe -g edgepipe "$STATE_DIR"
step install -d -m 0750 -o root -g edgepipe "$CONF_DIR"

echo "# 3. the code, the models and a venv that sees apt's picamera2 (--system-site-packages)"
step cp -r "$SRC/edge" "$SRC/models" "$SRC/schemas" "$SRC/pyproject.toml" "$SRC/README.md" "$PREFIX/"
step python3 -m venv --system-site-packages "$PREFIX/.venv"
step "$PREFIX/.venv/bin/pip" install --upgrade pip
step "$PREFIX/.venv/bin/pip" install "$PREFIX[edge]"

echo "# 4. the config (kept if it exists) and the state dir"
if [ ! -f "$CONF_DIR/agent.toml" ] || [ "$DRY_RUN" = 1 ]; then
  step install -m 0640 -o root -g edgepipe "$SRC/deploy/agent.example.toml" "$CONF_DIR/agent.toml"
  step sed -i -e "s|^device_id = .*|device_id = \"$DEVICE_ID\"|" \
    -e "s|^models_dir = .*|models_dir = \"$PREFIX/models\"|" \
    -e "s|^state_dir = .*|state_dir = \"$STATE_DIR\"|" "$CONF_DIR/agent.toml"
fi

if [ "$WITH_MOSQUITTO" = 1 ]; then
  echo "# 5. mosquitto with a password file and an ACL (set the passwords with mosquitto_passwd)"
  step install -m 0644 "$SRC/deploy/mosquitto/edgepipe.conf" /etc/mosquitto/conf.d/edgepipe.conf
  step install -m 0644 "$SRC/deploy/mosquitto/edgepipe.acl" /etc/mosquitto/edgepipe.acl
  step touch /etc/mosquitto/edgepipe.passwd
  step systemctl restart mosquitto
fi

echo "# 6. the systemd service"
step install -m 0644 "$SRC/deploy/edgepipe.service" /etc/systemd/system/edgepipe.service
step systemctl daemon-reload
step systemctl enable --now edgepipe.service
echo "# done: journalctl -u edgepipe -f   |   python -m edge subscribe --host localhost"
