#!/usr/bin/env bash
# Install dairy-edge on a gateway: Raspberry Pi OS (64-bit, Bookworm), Debian 12, or
# a Jetson with Python 3.11 (JetPack's own Python is older: pass --python). Run it
# as root from a dairy-edge checkout or release tarball (it needs systemd/ beside it).
#
#   sudo scripts/install_gateway.sh --gateway-id barn-7 --mqtt-host 127.0.0.1 \
#        --central-url https://central.example.org/api/v1/batches \
#        --key-id barn-7-1a2b3c4d --hmac-key-file ./barn-7.key \
#        [--mqtt-username gw --mqtt-password-file ./pw] \
#        [--web-admin-password-file ./web-pw] \
#        [--cameras v4l2|picamera2] [--wheel dist/dairy_edge-*.whl] [--no-start]
#
# What it does, each step safe to repeat (docs/install.md explains every one):
#   1. apt: python3-venv (and python3-picamera2 for --cameras picamera2)
#   2. a virtual environment in /opt/dairy-edge/venv (with the system site packages
#      for --cameras picamera2, so apt's picamera2 and libcamera are seen), the wheel
#      installed into it (reinstalled even when its version is the one installed)
#   3. the user (sysusers.d) and the folders (tmpfiles.d)
#   4. /etc/dairy-edge: `dairy-edge init` (kept if there), the credentials (0600 root):
#      hmac_key, mqtt_password, web_admin_password (the status page's first user,
#      admin; without it the agent writes a random one to
#      /var/lib/dairy-edge/web-initial-password at its first start)
#   5. the units (and the camera drop-in), systemctl enable --now
#
# --root DIR stages everything under DIR instead (no apt, no systemctl, users in
# DIR/etc/passwd): for packaging and for tests/test_install_script.py.
set -euo pipefail

PREFIX=/opt/dairy-edge
ROOT=""
GATEWAY_ID=""
MQTT_HOST=127.0.0.1
MQTT_PORT=1883
MQTT_USERNAME=""
CENTRAL_URL=""
KEY_ID=""
HMAC_KEY_FILE=""
MQTT_PASSWORD_FILE=""
WEB_ADMIN_PASSWORD_FILE=""
CAMERAS=""
WHEEL=""
PYTHON=python3
START=1
PIP_ARGS=()

here="$(cd "$(dirname "$0")/.." && pwd)"

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install_gateway: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --gateway-id) GATEWAY_ID="$2"; shift 2 ;;
    --mqtt-host) MQTT_HOST="$2"; shift 2 ;;
    --mqtt-port) MQTT_PORT="$2"; shift 2 ;;
    --mqtt-username) MQTT_USERNAME="$2"; shift 2 ;;
    --mqtt-password-file) MQTT_PASSWORD_FILE="$2"; shift 2 ;;
    --web-admin-password-file) WEB_ADMIN_PASSWORD_FILE="$2"; shift 2 ;;
    --central-url) CENTRAL_URL="$2"; shift 2 ;;
    --key-id) KEY_ID="$2"; shift 2 ;;
    --hmac-key-file) HMAC_KEY_FILE="$2"; shift 2 ;;
    --cameras) CAMERAS="$2"; shift 2 ;;
    --wheel) WHEEL="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --root) ROOT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --pip-arg) PIP_ARGS+=("$2"); shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done

[ -n "$GATEWAY_ID" ] || die "--gateway-id is required (this gateway's id at central, e.g. barn-7)"
case "$CAMERAS" in ""|v4l2|picamera2) ;; *) die "--cameras is v4l2 or picamera2" ;; esac
[ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ] && die "run as root (sudo), or stage with --root DIR"
[ -d "$here/systemd" ] || die "$here/systemd not found: run this from a dairy-edge checkout"
for f in "$HMAC_KEY_FILE" "$MQTT_PASSWORD_FILE" "$WEB_ADMIN_PASSWORD_FILE"; do
  [ -z "$f" ] || [ -r "$f" ] || die "cannot read $f"
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "$PYTHON is older than 3.11 (or missing). On a Jetson install Python 3.11 and pass --python"
arch="$(uname -m)"
case "$arch" in aarch64|x86_64) ;; *) die "unsupported machine $arch (64-bit aarch64 or x86_64)" ;; esac

if [ -z "$ROOT" ]; then
  step "apt: python3-venv${CAMERAS:+ and camera packages}"
  pkgs=(python3-venv)
  [ "$CAMERAS" = picamera2 ] && pkgs+=(python3-picamera2)
  [ "$CAMERAS" = v4l2 ] && pkgs+=(v4l-utils)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

venv="$ROOT$PREFIX/venv"
step "virtual environment $venv"
if [ ! -x "$venv/bin/python" ]; then
  venv_args=()
  # picamera2 and libcamera come from apt (they are not on PyPI for the Pi's camera stack)
  [ "$CAMERAS" = picamera2 ] && venv_args+=(--system-site-packages)
  "$PYTHON" -m venv "${venv_args[@]}" "$venv"
fi
if [ -z "$WHEEL" ]; then
  WHEEL_DIR="$(mktemp -d)"
  trap 'rm -rf "$WHEEL_DIR"' EXIT
  # built from a copy, so the source tree gets no build/ folder
  mkdir -p "$WHEEL_DIR/src"
  (cd "$here" && cp -a pyproject.toml README.md agent firmware_configs calibration models \
     examples "$WHEEL_DIR/src/")
  "$venv/bin/pip" wheel -q --no-deps -w "$WHEEL_DIR" "$WHEEL_DIR/src"
  WHEEL="$(ls "$WHEEL_DIR"/dairy_edge-*.whl)"
fi
# The dependencies the usual way, then the wheel itself again: pip skips a wheel whose
# version is already installed, and a rebuilt wheel of the same version must replace it.
"$venv/bin/pip" install -q --upgrade "${PIP_ARGS[@]}" "$WHEEL"
"$venv/bin/pip" install -q --force-reinstall --no-deps "${PIP_ARGS[@]}" "$WHEEL"
"$venv/bin/dairy-edge" --version

step "user and folders (sysusers.d, tmpfiles.d)"
install -D -m 0644 "$here/systemd/dairy-edge.sysusers.conf" "$ROOT/usr/lib/sysusers.d/dairy-edge.conf"
install -D -m 0644 "$here/systemd/dairy-edge.tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/dairy-edge.conf"
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT/etc"
  systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/dairy-edge.conf"
  systemd-tmpfiles --root="$ROOT" --create "$ROOT/usr/lib/tmpfiles.d/dairy-edge.conf"
else
  systemd-sysusers /usr/lib/sysusers.d/dairy-edge.conf
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/dairy-edge.conf
fi
group_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/group"; }
gid="$(group_of dairy-edge)"
[ -n "$gid" ] || die "group dairy-edge was not created"

etc="$ROOT/etc/dairy-edge"
step "configuration $etc"
if [ -f "$etc/dairy-edge.yaml" ]; then
  echo "kept $etc/dairy-edge.yaml (and the farm's firmware and calibration copies)"
else
  init_args=(init "$etc" --gateway-id "$GATEWAY_ID" --mqtt-host "$MQTT_HOST"
             --mqtt-port "$MQTT_PORT" --data-dir /var/lib/dairy-edge)
  [ -n "$MQTT_USERNAME" ] && init_args+=(--mqtt-username "$MQTT_USERNAME")
  [ -n "$CENTRAL_URL" ] && init_args+=(--central-url "$CENTRAL_URL")
  [ -n "$KEY_ID" ] && init_args+=(--key-id "$KEY_ID")
  "$venv/bin/dairy-edge" "${init_args[@]}" >/dev/null
  if [ -n "$ROOT" ]; then  # the paths inside the config are where they will be
    sed -i "s#$ROOT/etc/dairy-edge#/etc/dairy-edge#g" "$etc/dairy-edge.yaml"
  fi
  echo "wrote $etc/dairy-edge.yaml: edit it, then run the doctor (below)"
fi
# root owns the config, the service reads it
find "$etc" -path "$etc/credentials" -prune -o -exec chown "0:$gid" {} +
find "$etc" -path "$etc/credentials" -prune -o -type d -exec chmod 0750 {} +
find "$etc" -path "$etc/credentials" -prune -o -type f -exec chmod 0640 {} +

creds="$etc/credentials"
install -d -m 0700 "$creds"
[ -n "$HMAC_KEY_FILE" ] && install -m 0600 "$HMAC_KEY_FILE" "$creds/hmac_key"
[ -n "$MQTT_PASSWORD_FILE" ] && install -m 0600 "$MQTT_PASSWORD_FILE" "$creds/mqtt_password"
[ -n "$WEB_ADMIN_PASSWORD_FILE" ] &&
  install -m 0600 "$WEB_ADMIN_PASSWORD_FILE" "$creds/web_admin_password"
[ -f "$creds/hmac_key" ] || echo "note: no $creds/hmac_key yet: sync stays refused until it is there" \
  "(get it from central: dairy-edge central keys add $GATEWAY_ID)"

step "systemd units"
units="$ROOT/etc/systemd/system"
install -D -m 0644 "$here/systemd/dairy-edge.service" "$units/dairy-edge.service"
if [ -n "$CAMERAS" ]; then
  install -D -m 0644 "$here/systemd/dairy-edge-cameras.conf" \
    "$units/dairy-edge.service.d/cameras.conf"
fi
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
  if [ "$START" = 1 ]; then
    systemctl enable --now dairy-edge.service
    systemctl --no-pager --lines=5 status dairy-edge.service || true
  else
    systemctl enable dairy-edge.service
  fi
fi

cat <<EOF

Installed. Check the gateway with:
  sudo CREDENTIALS_DIRECTORY=/etc/dairy-edge/credentials $PREFIX/venv/bin/dairy-edge doctor
Logs: journalctl -u dairy-edge -f      Status page: http://<this gateway>:8080/
EOF
if [ -f "$creds/web_admin_password" ]; then
  echo "Status page login: admin, with the password in /etc/dairy-edge/credentials/" \
    "web_admin_password (used at the agent's first start, when no users file exists yet)"
else
  echo "Status page login: admin, with the password the agent writes at its first start" \
    "to /var/lib/dairy-edge/web-initial-password (sudo cat it, then delete it)"
fi
