#!/usr/bin/env bash
# Installs labhost to a temporary prefix, builds the example vendor driver out of tree with
# find_package(labhost), drops the .so into a plugins folder and calls it through a daemon
# of the installed labhost.
# Usage: out_of_tree_driver_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$1
build_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/labhost-oot-XXXXXX")
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$source_dir/packaging/example-driver" -B "$work/driver-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/driver-build" > "$work/build.log"

mkdir -p "$work/host/plugins"
cp "$work/driver-build/acme_attenuator.so" "$work/host/plugins/"
cat > "$work/host/host.json" <<JSON
{"plugin_dir": "plugins", "daemons": {"lab": {"address": "127.0.0.1:0",
  "services": {"attenuator": {"driver": "acme_attenuator", "params": {"attenuation_db": 3.0}}}}}}
JSON

"$work/prefix/bin/labhost" plugins --dir "$work/host/plugins" | grep -q "acme_attenuator 2.1.0 (ACME Photonics), ABI 1.2"

# Start the installed daemon and wait for its ready line (an event, not a sleep).
coproc daemon { exec "$work/prefix/bin/labhost" daemon --config "$work/host/host.json" --name lab 2>"$work/daemon.log"; }
daemon_pid=$daemon_PID
read -r -t 30 ready <&"${daemon[0]}" || { echo "daemon did not start:"; cat "$work/daemon.log"; exit 1; }
port=${ready##*127.0.0.1:}
address="lab://127.0.0.1:$port/attenuator"

labctl="$work/prefix/bin/labctl"
[ "$("$labctl" call "$address" attenuation)" = "3.0" ]
"$labctl" call "$address" set_attenuation 12.5 > /dev/null
[ "$("$labctl" call "$address" attenuation)" = "12.5" ]
if "$labctl" call "$address" set_attenuation 99 2> "$work/error.txt"; then
  echo "an out-of-range value was accepted"; exit 1
fi
grep -q "driver_error: attenuation must be 0 to 60 dB" "$work/error.txt"
echo "out-of-tree driver built against the installed SDK and served: ok"
