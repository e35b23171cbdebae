#!/usr/bin/env bash
# Does every runtime dependency have a wheel for the gateway: 64-bit ARM on CPython
# 3.11, for the oldest glibc of a supported gateway? That is 2.31 by default: a Jetson
# on JetPack 5 (Ubuntu 20.04; JetPack 6 has 2.35, Raspberry Pi OS Bookworm 2.36), and
# a wheel built for an older glibc runs on a newer one. pip resolves the package's
# dependencies for that platform, binary wheels only, without installing (about 4 s:
# it reads metadata). A dependency without such a wheel fails here, by name, instead
# of on a gateway building it from source for an hour or failing without a compiler.
#
#   scripts/check_aarch64_wheels.sh [WHEEL] [--python-version 3.12] [--glibc 2.36]
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
PYVER=3.11
GLIBC=2.31
WHEEL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) PYVER="$2"; shift 2 ;;
    --glibc) GLIBC="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) WHEEL="$1"; shift ;;
  esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "$WHEEL" ]; then
  # from a copy: setuptools' build/ never lands in the checkout
  mkdir -p "$work/src"
  cp -a pyproject.toml README.md agent firmware_configs calibration models examples "$work/src/"
  "$PIP" wheel -q --no-deps -w "$work/dist" "$work/src" >/dev/null
  WHEEL="$(ls "$work"/dist/dairy_edge-*.whl)"
fi
abi="cp${PYVER/./}"
platforms=()
case "$GLIBC" in 2.[0-9]|2.[0-9][0-9]) ;; *) echo "--glibc is 2.N, e.g. 2.31" >&2; exit 2 ;; esac
# every manylinux tag up to that glibc (pip takes the list as it is: no implied older ones)
for minor in $(seq 17 "${GLIBC#2.}"); do
  platforms+=(--platform "manylinux_2_${minor}_aarch64")
done
platforms+=(--platform manylinux2014_aarch64)
if ! "$PIP" install --dry-run --ignore-installed --target "$work/target" --only-binary=:all: \
    "${platforms[@]}" --python-version "$PYVER" --implementation cp --abi "$abi" \
    --report "$work/report.json" "$WHEEL" > "$work/log" 2>&1; then
  grep -v "WARNING: Location" "$work/log" >&2
  echo "check_aarch64_wheels: a dependency has no aarch64 wheel for CPython $PYVER (above)" >&2
  exit 1
fi
python3 - "$work/report.json" "$PYVER" "$GLIBC" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rows = sorted((i["metadata"]["name"], i["metadata"]["version"],
               i["download_info"]["url"].rsplit("/", 1)[-1]) for i in report["install"])
native = [r for r in rows if not r[2].endswith("-none-any.whl")]
print(f"aarch64, CPython {sys.argv[2]}, glibc {sys.argv[3]}: {len(rows)} packages, all as wheels "
      f"({len(native)} with native code):")
for name, version, file in native:
    print(f"  {name} {version}: {file}")
PY
