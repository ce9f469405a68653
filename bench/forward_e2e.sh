#!/usr/bin/env bash
# Benchmark: load → forwarder (in_forward → file buffer → out_forward) → receiver (in_forward →
# file buffer → out_file), fsync before every ack at both hops, acks on at both hops.
# End to end = from the first chunk sent until both buffers are empty (every event written to
# the receiver's output files); the output's line count is checked at the end.
#
# Usage: bench/forward_e2e.sh [EVENTS] [CONNECTIONS] [PIPELINE]
# Env: FORWARDER_CHUNK (2m), RECEIVER_CHUNK (8m) set chunk_limit_size at each hop;
#      OUTPUT_COMPRESS (text, out_file's default; gzip) the receiver's out_file `compress`.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-3000000}
CONNECTIONS=${2:-8}
PIPELINE=${3:-1}
EVENTS_PER_CHUNK=${EVENTS_PER_CHUNK:-1000}
RECORD_SIZE=${RECORD_SIZE:-170}
RECORD_CONTENT=${RECORD_CONTENT:-logs}

# LOGRAFT_BIN=PATH benchmarks that binary (e.g. an older build, to compare in one session).
if [ -z "${LOGRAFT_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${LOGRAFT_BIN:-target/release/lograft}
WORK=$(mktemp -d /tmp/lograft-e2e.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FPORT=$(port); RPORT=$(port); FMPORT=$(port); RMPORT=$(port)
# METRICS=1 adds `<source> @type prometheus` to each node and scrapes it once a second during
# the run (compare with METRICS=0 and with a build before the metrics: issue 11's 3 % bound).
metrics_source() { if [ "${METRICS:-0}" = 1 ]; then printf '<source>\n  @type prometheus\n  bind 127.0.0.1\n  port %s\n</source>\n' "$1"; fi; }
scrape() { if [ "${METRICS:-0}" = 1 ]; then while sleep 1; do for p in "$@"; do curl -fsS -o /dev/null "http://127.0.0.1:$p/metrics" || true; done; done; fi; }

cat > "$WORK/receiver.conf" <<CONF
<source>
  @type forward
  bind 127.0.0.1
  port $RPORT
</source>
$(metrics_source $RMPORT)
<match bench.**>
  @type file
  path $WORK/out/events
  compress ${OUTPUT_COMPRESS:-text}
  <buffer tag>
    @type file
    path $WORK/receiver-buffer
    flush_interval 0.1s
    chunk_limit_size ${RECEIVER_CHUNK:-8m}
    flush_thread_count 2
  </buffer>
</match>
CONF
cat > "$WORK/forwarder.conf" <<CONF
<source>
  @type forward
  bind 127.0.0.1
  port $FPORT
</source>
$(metrics_source $FMPORT)
<match bench.**>
  @type forward
  keepalive true
  <server>
    host 127.0.0.1
    port $RPORT
  </server>
  <buffer tag>
    @type file
    path $WORK/forwarder-buffer
    flush_interval 0.1s
    chunk_limit_size ${FORWARDER_CHUNK:-2m}
    flush_thread_count 4
  </buffer>
</match>
CONF

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
"$BIN" run -c "$WORK/receiver.conf" --data-dir "$WORK/rdata" --log-level warn 2>"$WORK/receiver.log" &
RPID=$!; PIDS+=($RPID); wait_port $RPORT
"$BIN" run -c "$WORK/forwarder.conf" --data-dir "$WORK/fdata" --log-level warn 2>"$WORK/forwarder.log" &
FPID=$!; PIDS+=($FPID); wait_port $FPORT

scrape $FMPORT $RMPORT & PIDS+=($!)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
f0=$(cpu $FPID); r0=$(cpu $RPID)
start=$(date +%s.%N)
/usr/bin/time -f "%e %U %S" -o "$WORK/client.time" \
  "$BIN" bench-load --target 127.0.0.1:$FPORT --events "$EVENTS" \
  --events-per-chunk "$EVENTS_PER_CHUNK" --record-size "$RECORD_SIZE" --content "$RECORD_CONTENT" \
  --connections "$CONNECTIONS" --pipeline "$PIPELINE" | tee "$WORK/load.out"
# Wait until both buffers hold no chunk files: everything reached the receiver's output.
chunks_left() { find "$WORK/forwarder-buffer" "$WORK/receiver-buffer" -maxdepth 1 -name 'buffer.*.log' 2>/dev/null | wc -l; }
while [ "$(chunks_left)" -gt 0 ]; do sleep 0.02; done
end=$(date +%s.%N)
f1=$(cpu $FPID); r1=$(cpu $RPID)
frss=$(awk '/VmHWM/ {print $2}' /proc/$FPID/status); rrss=$(awk '/VmHWM/ {print $2}' /proc/$RPID/status)
lines=$(zcat -f "$WORK"/out/* | wc -l)
read -r _ cu cs < <(tail -1 "$WORK/client.time")
python3 - "$start" "$end" "$f0" "$f1" "$r0" "$r1" "$TICK" "$EVENTS" "$cu" "$cs" "$frss" "$rrss" "$lines" <<'PY'
import sys
s, e, f0, f1, r0, r1, tick, ev, cu, cs, frss, rrss, lines = sys.argv[1:]
wall = float(e) - float(s); tick = float(tick); m = float(ev) / 1e6
fw = (float(f1) - float(f0)) / tick; rc = (float(r1) - float(r0)) / tick; cl = float(cu) + float(cs)
print(f"end_to_end_s={wall:.2f} end_to_end_events_per_s={float(ev)/wall:.0f} output_lines={lines}")
print(f"cpu_s_per_million: forwarder={fw/m:.3f} receiver={rc/m:.3f} load={cl/m:.3f} "
      f"lograft_total={(fw+rc)/m:.3f} all={(fw+rc+cl)/m:.3f}")
print(f"peak_rss_mb: forwarder={int(frss)/1024:.1f} receiver={int(rrss)/1024:.1f}")
PY
grep -hE "WARN|ERROR" "$WORK/forwarder.log" "$WORK/receiver.log" | head -5 || true
