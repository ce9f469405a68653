#!/usr/bin/env bash
# Benchmark: replicated throughput of the aggregator cluster on one machine. Three `lograft run`
# nodes with <cluster> (every chunk fsynced into the Raft log of each node, all on the same
# disk), the leader uploading to a local bucket directory; loopback only.
#
# Two measurements, each on a fresh cluster:
#   direct     bench-load → the leader's in_forward. Every ack means "committed on a majority
#              and applied", so the ack latency printed is the replicated-commit latency.
#   forwarder  bench-load → forwarder (file buffer, fsync before ack) → cluster → bucket.
#              End to end = from the first chunk sent until the forwarder's buffer is empty and
#              the leader has nothing pending or unconfirmed; the bucket's line count is checked.
#
# Usage: bench/cluster_e2e.sh [EVENTS] [CONNECTIONS] [PIPELINE]
# Env: MODE (both|direct|forwarder), EVENTS_PER_CHUNK (1000), RECORD_SIZE (170), RECORD_CONTENT (logs|padded|random: what
#      the records hold, see `lograft bench-load --help`),
#      FORWARDER_CHUNK (2m), BATCH (8m: the uploads' chunk_limit_size),
#      OUTPUT_COMPRESS (text, out_file's default: `.log` objects; gzip: `.log.gz`),
#      FLUSH_INTERVAL (0.1s, as bench/forward_e2e.sh's receiver; was 1s before session 17),
#      TLS (1: mutual TLS between the nodes, certificates from `lograft cluster certs`; 0: the
#      plaintext loopback transport; compare the two for the cost of TLS),
#      CLUSTER_EXTRA (more lines for each node's <cluster> section, e.g. "proposals_in_flight 4";
#      empty by default: the defaults of the binary under test).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-3000000}
CONNECTIONS=${2:-8}
PIPELINE=${3:-2}
MODE=${MODE:-both}
EVENTS_PER_CHUNK=${EVENTS_PER_CHUNK:-1000}
RECORD_SIZE=${RECORD_SIZE:-170}
RECORD_CONTENT=${RECORD_CONTENT:-logs}

# LOGRAFT_BIN=PATH benchmarks that binary (e.g. an older build, to compare in one session).
if [ -z "${LOGRAFT_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${LOGRAFT_BIN:-target/release/lograft}
WORK=$(mktemp -d /tmp/lograft-cluster-bench.XXXXXX)
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

TLS=${TLS:-0}
CERTS=$WORK/certs
if [ "$TLS" = 1 ]; then
  "$BIN" cluster certs "$CERTS" --nodes 1,2,3 >/dev/null
  export LOGRAFT_CLUSTER_CA=$CERTS/ca.pem LOGRAFT_CLUSTER_CERT=$CERTS/operator.pem LOGRAFT_CLUSTER_KEY=$CERTS/operator.key
fi
transport() {
  if [ "$TLS" = 1 ]; then printf '  <transport tls>\n    ca_path %s\n    cert_path %s\n    private_key_path %s\n  </transport>\n' \
    "$CERTS/ca.pem" "$CERTS/node-$1.pem" "$CERTS/node-$1.key"; fi
}

# start_cluster DIR: writes configs, starts three nodes, sets FWD[1..3], RAFT[1..3], NPID[1..3].
start_cluster() {
  local dir=$1 i members=""
  for i in 1 2 3; do FWD[$i]=$(port); RAFT[$i]=$(port); done
  for i in 1 2 3; do members+="<member>
  id $i
  address 127.0.0.1:${RAFT[$i]}
</member>
"; done
  for i in 1 2 3; do
    cat > "$dir/node$i.conf" <<CONF
<source>
  @type forward
  bind 127.0.0.1
  port ${FWD[$i]}
</source>
<match bench.**>
  @type file
  path $dir/bucket
  compress ${OUTPUT_COMPRESS:-text}
  <buffer tag>
    flush_interval ${FLUSH_INTERVAL:-0.1s}
    chunk_limit_size ${BATCH:-8m}
  </buffer>
</match>
<cluster>
  node_id $i
  address 127.0.0.1:${RAFT[$i]}
  data_dir $dir/node$i
  snapshot_every 5000
${CLUSTER_EXTRA:-}
$members$(transport "$i")
</cluster>
CONF
    "$BIN" run -c "$dir/node$i.conf" --log-level warn 2>"$dir/node$i.log" &
    NPID[$i]=$!; PIDS+=("${NPID[$i]}")
  done
  for i in 1 2 3; do wait_port "${FWD[$i]}"; done
}

leader_status() {
  local i
  for i in 1 2 3; do
    "$BIN" cluster status --json --node "127.0.0.1:${RAFT[$i]}" 2>/dev/null && return
  done
}
leader_id() { leader_status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])'; }
uploads_done() {
  leader_status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["pending_chunks"]==0 and s["unconfirmed_batches"]==0 else 1)'
}
bucket_lines() { find "$1/bucket" -type f \( -name '*.log' -o -name '*.log.gz' \) -print0 | xargs -0 -r zcat -f | wc -l; }

report() { # label start end events pids...
  local label=$1 s=$2 e=$3 ev=$4; shift 4
  local cpus="" p
  for p in "$@"; do cpus+=" $(cpu "$p")"; done
  python3 - "$label" "$s" "$e" "$ev" "$TICK" $cpus <<'PY'
import sys
label, s, e, ev, tick, *c = sys.argv[1:]
wall = float(e) - float(s)
print(f"{label}: wall_s={wall:.2f} events_per_s={float(ev)/wall:.0f}")
PY
}

# cpu_per_million LABEL EVENTS "TICKS_BEFORE..." "TICKS_AFTER..." NAMES...: CPU seconds each
# process spent per million events between the two snapshots (taken with cpu_ticks).
cpu_ticks() { local p out=""; for p in "$@"; do out+="$(cpu "$p") "; done; echo "$out"; }
cpu_per_million() {
  python3 - "$TICK" "$@" <<'PY'
import sys
tick, label, ev, before, after, *names = sys.argv[1:]
m = float(ev) / 1e6
used = [(float(a) - float(b)) / float(tick) for b, a in zip(before.split(), after.split())]
parts = " ".join(f"{n}={u / m:.3f}" for n, u in zip(names, used))
print(f"{label}: cpu_s_per_million {parts} total={sum(used) / m:.3f}")
PY
}

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), fs $(df -T "$WORK" | awk 'NR==2 {print $2}')"
}
machine

if [ "$MODE" = both ] || [ "$MODE" = direct ]; then
  D=$WORK/direct; mkdir -p "$D"
  start_cluster "$D"
  L=$(leader_id)
  echo "direct: bench-load -> leader (node $L) in_forward, $EVENTS events, $CONNECTIONS connections x $PIPELINE in flight"
  c0=$(cpu_ticks "${NPID[@]}")
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$D/load.time" "$BIN" bench-load --target "127.0.0.1:${FWD[$L]}" --tag bench.direct --events "$EVENTS" \
    --events-per-chunk "$EVENTS_PER_CHUNK" --record-size "$RECORD_SIZE" --content "$RECORD_CONTENT" \
    --connections "$CONNECTIONS" --pipeline "$PIPELINE"
  acked=$(date +%s.%N)
  while ! uploads_done; do sleep 0.1; done
  end=$(date +%s.%N)
  report "direct, until every chunk was acked (committed)" "$start" "$acked" "$EVENTS"
  report "direct, until every chunk was uploaded" "$start" "$end" "$EVENTS"
  c1=$(cpu_ticks "${NPID[@]}")
  read -r lu ls < <(tail -1 "$D/load.time")
  names=(); for i in 1 2 3; do if [ "$i" = "$L" ]; then names+=("node$i(leader)"); else names+=("node$i"); fi; done
  cpu_per_million "direct" "$EVENTS" "$c0 0" "$c1 $(python3 -c "print(($lu+$ls)*$TICK)")" "${names[@]}" load
  lines=$(bucket_lines "$D"); echo "direct: bucket lines=$lines (expected $EVENTS)"
  for i in 1 2 3; do echo "direct: node$i peak_rss_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/${NPID[$i]}/status")"; done
  echo "direct: AppendEntries past openraft's timeout (heartbeat_interval): $(cat "$D"/node*.log | grep -c "timeout.*AppendEntries\|AppendEntries.*[Tt]imeout" || true)"
  grep -hE "WARN|ERROR" "$D"/node*.log | grep -v "openraft" | head -5 || true
  stop_all
fi

if [ "$MODE" = both ] || [ "$MODE" = forwarder ]; then
  F=$WORK/forwarder; mkdir -p "$F"
  start_cluster "$F"
  FPORT=$(port)
  cat > "$F/forwarder.conf" <<CONF
<source>
  @type forward
  bind 127.0.0.1
  port $FPORT
</source>
<match bench.**>
  @type forward
  keepalive true
  <server>
    host 127.0.0.1
    port ${FWD[1]}
  </server>
  <server>
    host 127.0.0.1
    port ${FWD[2]}
    standby
  </server>
  <server>
    host 127.0.0.1
    port ${FWD[3]}
    standby
  </server>
  <buffer tag>
    @type file
    path $F/forwarder-buffer
    flush_interval 0.1s
    chunk_limit_size ${FORWARDER_CHUNK:-2m}
    flush_thread_count 4
  </buffer>
</match>
CONF
  "$BIN" run -c "$F/forwarder.conf" --data-dir "$F/fdata" --log-level warn 2>"$F/forwarder.log" &
  FPID=$!; PIDS+=("$FPID"); wait_port "$FPORT"
  L=$(leader_id)
  echo "forwarder: bench-load -> forwarder -> 3-node cluster (leader node $L) -> bucket, $EVENTS events"
  c0=$(cpu_ticks "${NPID[@]}" "$FPID")
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$F/load.time" "$BIN" bench-load --target "127.0.0.1:$FPORT" --tag bench.e2e --events "$EVENTS" \
    --events-per-chunk "$EVENTS_PER_CHUNK" --record-size "$RECORD_SIZE" --content "$RECORD_CONTENT" \
    --connections "$CONNECTIONS" --pipeline "$PIPELINE"
  chunks_left() { find "$F/forwarder-buffer" -maxdepth 1 -name 'buffer.*.log' 2>/dev/null | wc -l; }
  while [ "$(chunks_left)" -gt 0 ]; do sleep 0.05; done
  committed=$(date +%s.%N)
  while ! uploads_done; do sleep 0.1; done
  end=$(date +%s.%N)
  report "forwarder, until the forwarder's buffer was empty (all committed in the cluster)" "$start" "$committed" "$EVENTS"
  report "forwarder, until every chunk was uploaded" "$start" "$end" "$EVENTS"
  c1=$(cpu_ticks "${NPID[@]}" "$FPID")
  read -r lu ls < <(tail -1 "$F/load.time")
  names=(); for i in 1 2 3; do if [ "$i" = "$L" ]; then names+=("node$i(leader)"); else names+=("node$i"); fi; done
  cpu_per_million "forwarder" "$EVENTS" "$c0 0" "$c1 $(python3 -c "print(($lu+$ls)*$TICK)")" "${names[@]}" forwarder load
  lines=$(bucket_lines "$F"); echo "forwarder: bucket lines=$lines (expected $EVENTS)"
  echo "forwarder: peak_rss_mb=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$FPID/status")"
  grep -hE "WARN|ERROR" "$F"/*.log | grep -v "openraft" | head -5 || true
  stop_all
fi
