#!/usr/bin/env bash
# `make demo`: the whole build -> release -> run story on the example app, every step
# printed as an operator would type it. Leaves nothing running, whatever happens.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/supervisord-lite-demo.XXXXXX)
export BRR_ROOT="$work/root"
app="$here/contrib/example-app"
url="http://127.0.0.1:8080/"
daemon_pid=""

cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  [ -n "${client_pid:-}" ] && kill "$client_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until the command succeeds
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then echo "demo: gave up waiting for $what" >&2; exit 1; fi
    sleep 0.2
  done
}

if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',8080))!=0)"; then
  echo "demo: something already listens on 127.0.0.1:8080; stop it and run again" >&2
  exit 1
fi

say "The deploy root lives in $BRR_ROOT (BRR_ROOT is set, so no --root below)"
run brr-release init

say "Build the example app and release it with a config var: v1"
run brr-release deploy "$app" --set GREETING=hello --no-signal

say "Start the daemon (systemd would, at boot); its output goes to $work/daemon.log"
printf '$ supervisord-lite run --root %s &\n' "$BRR_ROOT"
supervisord-lite run --root "$BRR_ROOT" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
wait_for 60 "the web processes" python3 -c "import urllib.request; urllib.request.urlopen('$url', timeout=2)"
wait_for 60 "the daemon to report running" sh -c "supervisord-lite status --json | grep -q '\"state\": \"running\"'"
run supervisord-lite status
printf '$ curl %s\n' "$url"
python3 -c "import urllib.request; print(urllib.request.urlopen('$url').read().decode(), end='')"

say "Deploy v2 (new config) with a live start-first switch while a client keeps requesting"
python3 "$here/contrib/demo_client.py" "$url" "$work/stop-client" 120 >"$work/client.out" &
client_pid=$!
run brr-release deploy "$app" --set GREETING=hola --wait
touch "$work/stop-client"; wait "$client_pid"; client_pid=""
cat "$work/client.out"
run supervisord-lite status
printf '$ curl %s\n' "$url"
python3 -c "import urllib.request; print(urllib.request.urlopen('$url').read().decode(), end='')"

say "Roll back to v1"
run brr-release rollback --wait
printf '$ curl %s\n' "$url"
python3 -c "import urllib.request; print(urllib.request.urlopen('$url').read().decode(), end='')"
run brr-release releases

say "What the daemon printed (last lines)"
tail -n 12 "$work/daemon.log"

say "Stop: SIGTERM stops every process gracefully"
printf '$ supervisord-lite shutdown\n'
supervisord-lite shutdown || kill -TERM "$daemon_pid"
wait "$daemon_pid" && echo "daemon exited 0"
daemon_pid=""
if ! python3 -c "import psutil, sys; sys.exit(any((p.info['cwd'] or '').startswith(sys.argv[1]) for p in psutil.process_iter(['cwd'])))" "$BRR_ROOT"; then
  echo "demo: processes of the demo are still running" >&2; exit 1
fi
echo "nothing left running; demo done"
