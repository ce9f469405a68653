#!/usr/bin/env bash
# Benchmark: in_forward → file buffer (fsync before every ack) → null output, on loopback.
# Load: PackedForward chunks of EVENTS_PER_CHUNK events of ~RECORD_SIZE bytes, acks on.
# Prints events/s, ack latency, and CPU seconds per million events for the node and the client.
#
# Usage: bench/forwarder.sh [EVENTS] [CONNECTIONS] [PIPELINE]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
CONNECTIONS=${2:-8}
PIPELINE=${3:-4}
EVENTS_PER_CHUNK=${EVENTS_PER_CHUNK:-1000}
RECORD_SIZE=${RECORD_SIZE:-200}
RECORD_CONTENT=${RECORD_CONTENT:-logs}

# LOGRAFT_BIN=PATH benchmarks that binary (e.g. an older build, to compare in one session).
if [ -z "${LOGRAFT_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${LOGRAFT_BIN:-target/release/lograft}
WORK=$(mktemp -d /tmp/lograft-bench.XXXXXX)
SCRAPER=
trap 'kill $PID $SCRAPER 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# METRICS=1 adds `<source> @type prometheus` to each node and scrapes it once a second during
# the run (compare with METRICS=0 and with a build before the metrics: issue 11's 3 % bound).
metrics_source() { if [ "${METRICS:-0}" = 1 ]; then printf '<source>\n  @type prometheus\n  bind 127.0.0.1\n  port %s\n</source>\n' "$1"; fi; }
scrape() { if [ "${METRICS:-0}" = 1 ]; then while sleep 1; do for p in "$@"; do curl -fsS -o /dev/null "http://127.0.0.1:$p/metrics" || true; done; done; fi; }

cat > "$WORK/bench.conf" <<CONF
<source>
  @type forward
  bind 127.0.0.1
  port $PORT
</source>
$(metrics_source $MPORT)
<match bench.**>
  @type null
  <buffer tag>
    @type file
    path $WORK/buffer
    flush_mode interval
    flush_interval 1s
    chunk_limit_size 64m
    flush_thread_count 2
  </buffer>
</match>
CONF

"$BIN" run -c "$WORK/bench.conf" --data-dir "$WORK/data" --log-level warn 2>"$WORK/node.log" &
PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done

scrape $MPORT & SCRAPER=$!
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
before=$(cpu $PID)
/usr/bin/time -f "%e %U %S" -o "$WORK/client.time" \
  "$BIN" bench-load --target 127.0.0.1:$PORT --events "$EVENTS" \
  --events-per-chunk "$EVENTS_PER_CHUNK" --record-size "$RECORD_SIZE" --content "$RECORD_CONTENT" \
  --connections "$CONNECTIONS" --pipeline "$PIPELINE" | tee "$WORK/load.out"
after=$(cpu $PID)
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)

read -r _ user sys < <(tail -1 "$WORK/client.time")
python3 - "$before" "$after" "$TICK" "$EVENTS" "$user" "$sys" "$rss_kb" <<'PY'
import sys
b, a, tick, events, cu, cs, rss = sys.argv[1:]
node = (float(a) - float(b)) / float(tick)
client = float(cu) + float(cs)
m = float(events) / 1e6
print(f"node_cpu_s={node:.2f} node_cpu_s_per_million={node/m:.3f} "
      f"client_cpu_s={client:.2f} client_cpu_s_per_million={client/m:.3f} node_peak_rss_mb={int(rss)/1024:.1f}")
PY
grep -E "WARN|ERROR" "$WORK/node.log" | head -5 || true
