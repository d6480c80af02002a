#!/bin/bash
# powercut.sh - real power-cut tests of mapstate in a qemu guest.
#
# Builds crates/mapstate-powercut as a static binary, writes a checker wrapper and runs the
# harness ../shared/powercut/run-cuts.sh: the guest runs `mapstate-powercut workload MODE`
# (commits forever, printing what the mode promises), the host cuts the power at a random
# moment, and `mapstate-powercut check MODE ...` recovers the state from the disk as the next
# boot would and checks it is one committed state that lost no more than the mode allows.
#
# Usage: scripts/powercut.sh --mode sync|periodic|pagecache --cuts N [options] [-- RUN-CUTS ARGS]
#   --mode M          durability under test (Durability::Sync / Periodic / PageCache)
#   --cuts N          number of power cuts                                   default: 20
#   --disk-model M    direct | drop | random:P | keep (see run-cuts.sh -h)   default: direct
#   --interval-ms T   periodic: the sync interval                            default: 100
#   --shrink          the state's length also shrinks and regrows (saw tooth)
#   --append          every transaction only appends pages (checkpoints without a journal)
#   --threads N       sync: N threads commit through one SharedWriter (group commit)
#   --control         negative control: the workload commits with PageCache durability while
#                     printing what MODE promises; sync/periodic runs must then report violations
#   -- ARGS           passed to run-cuts.sh as they are (e.g. --keep --seed 7 --max-ms 6000)
# env: POWERCUT_DIR   the harness directory (default: REPO/../shared/powercut)
#      PC_SLACK_MS    periodic: slack added to the interval by the checker (default 250)
#      CARGO_TARGET_DIR  default: REPO/target-powercut
# The disk is 256 MiB unless `-- --disk-mb M` says otherwise (mapstate's log alone is 64 MiB).
# The last line of output is the harness's `N cuts, X violations`; exit 0 = no violations,
# 1 = violations, 2 = harness or build error.
set -uo pipefail

MODE= CUTS=20 DISKMODEL=direct INTERVAL=100 SHRINK=0 APPEND=0 CONTROL=0 THREADS=0 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2; shift;;
    --cuts) CUTS=$2; shift;;
    --disk-model) DISKMODEL=$2; shift;;
    --interval-ms) INTERVAL=$2; shift;;
    --shrink) SHRINK=1;;
    --append) APPEND=1;;
    --threads) THREADS=$2; shift;;
    --control) CONTROL=1;;
    --) shift; EXTRA=("$@"); break;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0;;
    *) echo "powercut.sh: unknown option $1 (see -h)" >&2; exit 2;;
  esac; shift
done
case "$MODE" in
  sync|pagecache) MODEARGS="$MODE";;
  periodic) MODEARGS="periodic $INTERVAL";;
  *) echo "powercut.sh: --mode sync|periodic|pagecache is required" >&2; exit 2;;
esac
[ "$SHRINK" = 1 ] && MODEARGS="$MODEARGS --shrink"
[ "$APPEND" = 1 ] && MODEARGS="$MODEARGS --append"
CHECKARGS=$MODEARGS
[ "$CONTROL" = 1 ] && MODEARGS="$MODEARGS --control"
[ "$THREADS" != 0 ] && MODEARGS="$MODEARGS --threads $THREADS"
for a in "${EXTRA[@]}"; do [ "$a" = --fresh ] && CHECKARGS="$CHECKARGS --fresh"; done

# ---- where things are ----------------------------------------------------------------------
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${POWERCUT_DIR:-}" ]; then PCDIR=$POWERCUT_DIR
else
  PCDIR=$REPO/../shared/powercut
  if [ ! -x "$PCDIR/run-cuts.sh" ]; then
    top=$(git -C "$REPO" rev-parse --show-toplevel 2>/dev/null) && PCDIR=$top/../shared/powercut
  fi
fi
[ -x "$PCDIR/run-cuts.sh" ] || { echo "powercut.sh: no run-cuts.sh in $PCDIR (set POWERCUT_DIR)" >&2; exit 2; }
PCDIR=$(cd "$PCDIR" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-powercut}
TARGET=x86_64-unknown-linux-gnu

# ---- what the harness needs (qemu, busybox, the guest kernel, file, ...) -------------------
"$PCDIR/setup.sh" >&2 || { echo "powercut.sh: $PCDIR/setup.sh failed" >&2; exit 2; }
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  rustup target add "$TARGET" >&2 || true
fi

# ---- build: one static binary, the guest's workload and the host's checker ----------------
( cd "$REPO" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target "$TARGET" -p mapstate-powercut ) >&2 \
  || { echo "powercut.sh: build failed" >&2; exit 2; }
BIN=$CARGO_TARGET_DIR/$TARGET/release/mapstate-powercut
file -L "$BIN" | grep -q 'statically linked\|static-pie' \
  || { echo "powercut.sh: $BIN is not static: $(file -L "$BIN")" >&2; exit 2; }

# The checker is the same binary (a static x86_64 ELF runs on the host too), copied so that
# a rebuild during the run changes neither side. The wrapper pins MODE and its arguments;
# the harness adds ROOTDIR CYCLE_LOG ALL_LOG.
mkdir -p /tmp/powercut
WRAPDIR=$(mktemp -d /tmp/powercut/mapstate-check.XXXXXX)
trap 'rm -rf "$WRAPDIR"' EXIT
cp "$BIN" "$WRAPDIR/mapstate-powercut"; BIN=$WRAPDIR/mapstate-powercut
WRAPPER=$WRAPDIR/check.sh
cat > "$WRAPPER" <<EOF
#!/bin/sh
exec "$BIN" check $CHECKARGS "\$@"
EOF
chmod +x "$WRAPPER"

echo "powercut.sh: mode=$MODE$([ "$MODE" = periodic ] && echo " interval=${INTERVAL}ms") disk-model=$DISKMODEL cuts=$CUTS workload=\"$MODEARGS\" harness=$PCDIR" >&2
# The harness's own last line ("N cuts, X violations") is our last line: nothing follows it.
"$PCDIR/run-cuts.sh" -b "$BIN" -c "$WRAPPER" -a "workload $MODEARGS" -n "$CUTS" \
  --disk-model "$DISKMODEL" --disk-mb 256 "${EXTRA[@]}"
rc=$?
exit $rc
