#!/usr/bin/env bash
# Benchmark: the tail input. tail → file buffer (every batch fsynced with its file position)
# → null. Two runs, each on a fresh data directory:
#   one   one file of LINES lines of 200 bytes (default 2,000,000 lines = 400 MB)
#   many  FILES files (default 100) sharing the same number of lines
# The files are written before lograft starts (read_from_head true); a run ends when the pos
# file (rewritten every 200 ms, only with committed positions) shows every file read to its
# end. Prints lines/s, MB/s, CPU seconds per million lines and peak RSS (VmHWM).
#
# Usage: bench/tail.sh [LINES] [FILES]
# Env: LOGRAFT_BIN=PATH (benchmark that binary; default: build and use target/release/lograft),
#      MODE (both|one|many), READ_LINES (read_lines_limit, default 10000),
#      CHUNK (chunk_limit_size, default 8m), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-2000000}
FILES=${2:-100}
MODE=${MODE:-both}
READ_LINES=${READ_LINES:-10000}
CHUNK=${CHUNK:-8m}

if [ -z "${LOGRAFT_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${LOGRAFT_BIN:-target/release/lograft}
WORK=$(mktemp -d /tmp/lograft-tail-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
TICK=$(getconf CLK_TCK)

# gen FILE START COUNT: COUNT lines of exactly 200 bytes (199 + newline).
gen() {
  awk -v s="$2" -v n="$3" 'BEGIN {
    pad = sprintf("%179s", ""); gsub(/ /, "x", pad);
    for (i = s; i < s + n; i++) printf "%019d %s\n", i, pad }' > "$1"
}

# all_read DIR POS: true when the pos file has every *.log of DIR at its size.
all_read() {
  python3 - "$1" "$2" <<'PY'
import os, sys
d, pos = sys.argv[1], sys.argv[2]
want = {}
for n in os.listdir(d):
    if n.endswith(".log"):
        st = os.stat(os.path.join(d, n))
        want[st.st_ino] = st.st_size
got = {}
try:
    for line in open(pos):
        p = line.rstrip("\n").rsplit("\t", 2)
        got[int(p[2], 16)] = int(p[1], 16)
except (FileNotFoundError, IndexError, ValueError):
    pass
sys.exit(0 if all(got.get(i) == s for i, s in want.items()) else 1)
PY
}

run() {
  local name=$1 nfiles=$2 dir="$WORK/$1"
  mkdir -p "$dir/logs"
  local per=$((LINES / nfiles)) i
  for ((i = 0; i < nfiles; i++)); do gen "$dir/logs/f$i.log" $((i * per)) "$per"; done
  local total=$((per * nfiles))
  local bytes=$((total * 200))
  cat > "$dir/lograft.conf" <<CONF
<source>
  @type tail
  path $dir/logs/*.log
  tag bench.*
  pos_file $dir/tail.pos
  read_from_head true
  read_lines_limit $READ_LINES
  <parse>
    @type none
  </parse>
</source>
<match bench.**>
  @type null
  <buffer>
    @type file
    path $dir/buffer
    flush_interval 1s
    chunk_limit_size $CHUNK
  </buffer>
</match>
CONF
  sync
  local start end
  start=$(date +%s.%N)
  "$BIN" run -c "$dir/lograft.conf" --data-dir "$dir/data" 2> "$dir/lograft.log" &
  PID=$!
  until all_read "$dir/logs" "$dir/tail.pos"; do
    kill -0 "$PID" 2>/dev/null || { echo "lograft exited; log:"; tail -20 "$dir/lograft.log"; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  local cpu_ticks rss
  cpu_ticks=$(awk '{print $14+$15}' "/proc/$PID/stat")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  python3 - "$name" "$nfiles" "$total" "$bytes" "$start" "$end" "$cpu_ticks" "$TICK" "$rss" <<'PY'
import sys
name, nfiles, total, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start, end, ticks, tick, rss = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
secs = end - start
cpu = ticks / tick
print(f"{name:5} files={nfiles:<4} lines={total} bytes={nbytes/1e6:.0f}MB time={secs:.2f}s "
      f"lines/s={total/secs:,.0f} MB/s={nbytes/secs/1e6:.1f} "
      f"cpu-s/Mlines={cpu/(total/1e6):.3f} peak_rss={rss/1024:.1f}MB")
PY
}

case "$MODE" in
  one) run one 1 ;;
  many) run many "$FILES" ;;
  *) run one 1; run many "$FILES" ;;
esac
