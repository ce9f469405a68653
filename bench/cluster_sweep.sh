#!/usr/bin/env bash
# Sweep: the cluster's committed and uploaded rate and the ack latency against the number of
# connections, for one or more lograft binaries, interleaved (A, B, A, B ... per point) because
# this machine drifts. Each point is one `MODE=direct bench/cluster_e2e.sh EVENTS CONN 1` run on a
# fresh cluster, plus (with SINGLE=1) one `bench/forward_e2e.sh EVENTS` for the single-aggregator
# rate of the same binary in the same session.
#
# Usage: bench/cluster_sweep.sh OUT.csv LABEL=BIN [LABEL=BIN...]
# Env: EVENTS (2000000), CONNS ("1 2 4 8 16"), ROUNDS (1), SINGLE (1).
# Then: bench/plot_sweep.py OUT.csv docs/NAME.svg
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1; shift
EVENTS=${EVENTS:-2000000}
CONNS=${CONNS:-1 2 4 8 16}
ROUNDS=${ROUNDS:-1}
SINGLE=${SINGLE:-1}
echo "label,round,connections,committed_events_per_s,uploaded_events_per_s,ack_p50_ms,ack_p99_ms,rss1_mb,rss2_mb,rss3_mb,single_events_per_s" > "$OUT"
for round in $(seq "$ROUNDS"); do
  for conn in $CONNS; do
    for pair in "$@"; do
      label=${pair%%=*}; bin=${pair#*=}
      log=$(mktemp)
      LOGRAFT_BIN=$bin MODE=direct bench/cluster_e2e.sh "$EVENTS" "$conn" 1 > "$log" 2>&1 || { cat "$log"; exit 1; }
      single=""
      if [ "$SINGLE" = 1 ] && [ "$conn" = "$(echo $CONNS | awk '{print $1}')" ]; then
        single=$(LOGRAFT_BIN=$bin bench/forward_e2e.sh "$EVENTS" 2>&1 | sed -n 's/.*end_to_end_events_per_s=\([0-9]*\).*/\1/p' | tail -1)
      fi
      python3 - "$log" "$label" "$round" "$conn" "$single" >> "$OUT" <<'PY'
import re, sys
log, label, rnd, conn, single = sys.argv[1:]
text = open(log).read()
def rate(prefix):
    m = re.search(re.escape(prefix) + r".*?events_per_s=(\d+)", text)
    return m.group(1) if m else ""
load = re.search(r"ack_p50_ms=([\d.]+) ack_p99_ms=([\d.]+)", text)
rss = re.findall(r"node\d peak_rss_mb=([\d.]+)", text)
print(",".join([label, rnd, conn, rate("direct, until every chunk was acked"),
                rate("direct, until every chunk was uploaded"),
                load.group(1) if load else "", load.group(2) if load else ""] + (rss + ["", "", ""])[:3] + [single]))
PY
      tail -1 "$OUT"
      rm -f "$log"
    done
  done
done
