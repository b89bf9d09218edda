#!/usr/bin/env bash
# Installs labhost to a temporary prefix, builds the example client program out of tree with
# find_package(labhost) and target_link_libraries(... labhost::client), and runs it against a
# daemon of the installed labhost serving the installed simulated laser.
# Usage: out_of_tree_client_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$1
build_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/labhost-client-XXXXXX")
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$source_dir/packaging/example-client" -B "$work/client-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/client-build" > "$work/build.log" || { cat "$work/build.log"; exit 1; }

plugins=$(dirname "$(find "$work/prefix" -name sim_laser.so | head -1)")
cat > "$work/host.json" <<JSON
{"plugin_dir": "$plugins", "daemons": {"lab": {"address": "127.0.0.1:0",
  "services": {"laser": {"driver": "sim_laser"}}}}}
JSON
# Start the installed daemon and wait for its ready line (an event, not a sleep).
coproc daemon { exec "$work/prefix/bin/labhost" daemon --config "$work/host.json" --name lab 2>"$work/daemon.log"; }
daemon_pid=$daemon_PID
read -r -t 30 ready <&"${daemon[0]}" || { echo "daemon did not start:"; cat "$work/daemon.log"; exit 1; }
port=${ready##*127.0.0.1:}

"$work/client-build/laser_scan" "lab://127.0.0.1:$port/laser" > "$work/out.txt"
expected=$'wavelength 1550\nwavelength 1550.5\nwavelength 1551\nrefused: bad_arguments\ndaemon lab'
if [ "$(cat "$work/out.txt")" != "$expected" ]; then
  echo "unexpected output:"; cat "$work/out.txt"; exit 1
fi
# The program's own failure path: no daemon there is a typed error and exit status 1.
if "$work/client-build/laser_scan" "lab://127.0.0.1:1/laser" 2> "$work/error.txt"; then
  echo "a connection to nowhere succeeded"; exit 1
fi
grep -q "^laser_scan: connection_lost: " "$work/error.txt"
echo "out-of-tree client built against the installed labhost::client and served: ok"
