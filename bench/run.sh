#!/usr/bin/env bash
# knockgate and knockd side by side, on the same traffic, in one run (issue #9).
#
#   sudo bench/run.sh            # about 9 minutes; writes bench/results.md
#
# Builds knockgate (release) and the generator bench/ (knockgen), makes a gateway and a
# client network namespace joined by a veth pair, and runs each measurement for knockgate,
# then for knockd, with a fresh daemon each time:
#   4. idle cost        3. knock-to-open latency        1. CPU per packet vs tracked sources
#   5. CPU per packet at fixed rates (5k, 20k, 100k packets/s from 30k spoofed sources)
#   2. a 60 s spoofed-source SYN flood with 10 legitimate knocks
# Every frame is injected on the client's veth end inside the client namespace and goes only
# to the gateway namespace; spoofed sources are 10.0.0.0/8, legitimate ones 192.168.78-79.x.
# Namespaces, daemons and helpers are removed on exit (trap), whatever happens.
#
# Not part of CI: too long, and too noisy on a shared machine. Smaller runs for a smoke test:
#   KG_BENCH_SIZES="1000 3000" KG_BENCH_FLOOD_S=5 KG_BENCH_LATENCY_N=5 KG_BENCH_IDLE_S=3 \
#     KG_BENCH_RESULTS=/tmp/results.md bench/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SIZES=${KG_BENCH_SIZES:-"1000 30000 100000"}
RATES=${KG_BENCH_RATES:-"5000 20000 100000"}
FLOOD_S=${KG_BENCH_FLOOD_S:-60}
LAT_N=${KG_BENCH_LATENCY_N:-100}
IDLE_S=${KG_BENCH_IDLE_S:-30}
PHASE_MAX=${KG_BENCH_PHASE_MAX:-120}   # seconds, per test-1 phase and daemon
RESULTS=${KG_BENCH_RESULTS:-$HERE/results.md}

[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (namespaces, iptables)" >&2; exit 1; }
for tool in ip iptables nft knockd cargo jq; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing" >&2; exit 1; }
done

GW=kgbench$$-gw
CL=kgbench$$-cl
GWIF=kbgw0
CLIF=kbcl0
GW_IP=192.168.77.1
CL_IP=192.168.77.2
STATUS=$GW_IP:8080
WORK=$(mktemp -d /tmp/kgbench.XXXXXX)
OUT=$WORK/out
mkdir -p "$OUT"
DAEMON_PID=
HELPERS=()
T_START=$(date +%s)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
}

cleanup() {
    local rc=$?
    set +e
    for p in "${HELPERS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    stop_daemon
    ip netns del "$GW" 2>/dev/null
    ip netns del "$CL" 2>/dev/null
    if [ -d "$WORK" ]; then
        rm -rf "$ROOT/target/bench/last-run"
        mkdir -p "$ROOT/target/bench"
        cp -r "$OUT" "$ROOT/target/bench/last-run" 2>/dev/null
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
log "building knockgate and knockgen (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin knockgate
cargo build --release --quiet --manifest-path "$HERE/Cargo.toml" --target-dir "$ROOT/target/bench"
KG=$ROOT/target/release/knockgate
GEN=$ROOT/target/bench/release/knockgen
gw() { ip netns exec "$GW" "$@"; }
cl() { ip netns exec "$CL" "$@"; }

log "namespaces $GW and $CL, veth $GWIF <-> $CLIF"
ip netns add "$GW"
ip netns add "$CL"
ip link add name "$GWIF" netns "$GW" type veth peer name "$CLIF" netns "$CL"
for ns in "$GW" "$CL"; do
    # No IPv6: no router solicitations or MLD reports to wake the daemons in the idle test.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$GW" addr add "$GW_IP/24" dev "$GWIF"
ip -n "$CL" addr add "$CL_IP/24" dev "$CLIF"
ip -n "$GW" link set "$GWIF" up
ip -n "$CL" link set "$CLIF" up
GW_MAC=$(gw cat "/sys/class/net/$GWIF/address")
# The gateway's base ruleset (README, "The firewall"): the knocks are captured before
# netfilter and then dropped, so the kernel answers nothing to the spoofed sources.
gw iptables -w -A INPUT -i lo -j ACCEPT
gw iptables -w -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
gw iptables -w -P INPUT DROP

GEN_TX=(--iface "$CLIF" --dst "$GW_IP" --dst-mac "$GW_MAC")

# ---------------------------------------------------------------------------------------
# Daemons. Both get the same door: 7000,8000,9000 over TCP, SYN without ACK, that opens
# 22/tcp to the knocker in the KNOCKD chain. knockgate manages the chain itself (it creates
# it and the INPUT jump); knockd runs an iptables command, as its documentation shows, into
# a chain made for it.

# write_configs NAME SEQ_TIMEOUT_S KNOCKGATE_MAX_SOURCES
write_configs() {
    local name=$1 timeout=$2 max=$3
    cat >"$WORK/$name-knockgate.toml" <<EOF
[daemon]
interfaces = ["$GWIF"]
log_file = "$WORK/$name-knockgate.log"
state_dir = "$WORK/$name-knockgate-state"
max_sources = $max

[firewall]
chain = "KNOCKD"
daily_flush = "off"

[status]
listen = "$STATUS"

[[door]]
name = "openSSH"
sequence = ["7000", "8000", "9000"]
seq_timeout = "${timeout}s"
tcp_flags = "syn,!ack"
firewall = { ports = ["22/tcp"], duration = "30m" }
EOF
    cat >"$WORK/$name-knockd.conf" <<EOF
[options]
    LogFile = $WORK/$name-knockd.log

[openSSH]
    Sequence      = 7000,8000,9000
    Seq_Timeout   = $timeout
    TCPFlags      = syn,!ack
    Start_Command = /usr/sbin/iptables -w -A KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT
EOF
    "$KG" check --config "$WORK/$name-knockgate.toml" >/dev/null
}

# wait_for FILE TEXT SECONDS
wait_for() {
    local i
    for i in $(seq $(($3 * 10))); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench/run.sh: '$2' not in $1 after $3 s" >&2
    cat "$1" >&2 || true
    return 1
}

reset_chain() {
    gw iptables -w -F KNOCKD 2>/dev/null || true
    while gw iptables -w -D INPUT -j KNOCKD 2>/dev/null; do :; done
    gw iptables -w -X KNOCKD 2>/dev/null || true
}

# start DAEMON NAME: starts it in the gateway namespace; sets DAEMON_PID.
start() {
    local d=$1 name=$2
    reset_chain
    if [ "$d" = knockgate ]; then
        ip netns exec "$GW" "$KG" run --config "$WORK/$name-knockgate.toml" </dev/null >>"$WORK/$name-knockgate.stderr" 2>&1 &
        DAEMON_PID=$!
        wait_for "$WORK/$name-knockgate.log" "listening on $GWIF" 20
        wait_for "$WORK/$name-knockgate.log" "chain KNOCKD ready" 20
    else
        gw iptables -w -N KNOCKD
        gw iptables -w -I INPUT 1 -j KNOCKD
        ip netns exec "$GW" knockd -c "$WORK/$name-knockd.conf" -i "$GWIF" </dev/null >>"$WORK/$name-knockd.stderr" 2>&1 &
        DAEMON_PID=$!
        wait_for "$WORK/$name-knockd.log" "starting up, listening on $GWIF" 20
    fi
    # `ip netns exec` execs the daemon: the pid is the daemon's own.
    local comm
    comm=$(cat "/proc/$DAEMON_PID/comm")
    [ "$comm" = "$d" ] || { echo "bench/run.sh: pid $DAEMON_PID is $comm, not $d" >&2; return 1; }
}

# kg_counter NAME: one of knockgate's status counters (packets, tracked_sources, ...).
kg_counter() { gw "$GEN" status --addr "$STATUS" | jq -r ".$1"; }

# ---------------------------------------------------------------------------------------
{
    echo "## Machine and run"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores (shared with other work: figures are noisy, ratios come from one run)"
    echo "- virtualization: $(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1 | sed 's/^$/none reported/')"
    echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- kernel: $(uname -sr), $(iptables -V)"
    echo "- OS: $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "- knockgate: commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)'), release build, $(rustc --version | cut -d' ' -f1-2)"
    echo "- knockd: Debian package $(dpkg-query -W -f '${Version}' knockd), libpcap $(dpkg-query -W -f '${Version}\n' libpcap0.8 2>/dev/null | head -1)"
} >"$OUT/machine.md"

# ---------------------------------------------------------------------------------------
log "test 4: idle cost (${IDLE_S} s each)"
write_configs t4 25 100000
for d in knockgate knockd; do
    start "$d" t4
    sleep 2
    gw "$GEN" mem --pid "$DAEMON_PID" >"$OUT/t4-$d-start.json"
    sleep 3
    "$GEN" idle --pid "$DAEMON_PID" --seconds "$IDLE_S" >"$OUT/t4-$d.json"
    log "  $d: $(cat "$OUT/t4-$d.json")"
    stop_daemon
done

# ---------------------------------------------------------------------------------------
log "test 3: knock-to-open latency ($LAT_N knocks each)"
write_configs t3 25 100000
for d in knockgate knockd; do
    start "$d" t3
    sleep 2
    cl "$GEN" latency "${GEN_TX[@]}" --seq 7000,8000,9000 --count "$LAT_N" \
        --src-base 192.168.79.1 --gw-netns "$GW" --gap-ms 200 --timeout-ms 5000 \
        --max-seconds 300 >"$OUT/t3-$d.json"
    log "  $d: $(jq -c '{opened, attempted, p50_ms, p99_ms, max_ms}' "$OUT/t3-$d.json")"
    stop_daemon
done

# ---------------------------------------------------------------------------------------
log "test 1: CPU per 100k packets at $SIZES tracked sources"
echo "$SIZES" >"$OUT/t1-sizes.txt"
: >"$OUT/t1-checks.txt"
# A sequence timeout longer than the test, so the preloaded sources stay tracked; knockgate's
# cap above the largest size, so none is evicted.
write_configs t1 3600 200000
for d in knockgate knockd; do
    start "$d" t1
    sleep 2
    prev=0
    sent=0
    for size in $SIZES; do
        # Preload: first knocks from new sources 10.0.0.0 + [prev, size).
        cl "$GEN" send "${GEN_TX[@]}" --src-base 10.0.0.0 --src-count 16777216 \
            --src-offset "$prev" --count $((size - prev)) --port 7000 \
            --settle-pid "$DAEMON_PID" --batch 1000 --max-seconds "$PHASE_MAX" \
            >"$OUT/t1-$d-$size-preload.json"
        # Measure: 100k SYNs to the second knock port from sources nobody tracks
        # (10.128.0.0 + [0, 100k)): every daemon looks each one up, and no state changes.
        cl "$GEN" send "${GEN_TX[@]}" --src-base 10.128.0.0 --src-count 100000 \
            --count 100000 --port 8000 \
            --settle-pid "$DAEMON_PID" --batch 1000 --max-seconds "$PHASE_MAX" \
            >"$OUT/t1-$d-$size-probe.json"
        sent=$((sent + $(jq .sent "$OUT/t1-$d-$size-preload.json") + $(jq .sent "$OUT/t1-$d-$size-probe.json")))
        if [ "$d" = knockgate ]; then
            echo "knockgate at $size: tracked_sources = $(kg_counter tracked_sources), packets received = $(kg_counter packets) of $sent sent, dropped_queue = $(kg_counter dropped_queue)" >>"$OUT/t1-checks.txt"
        else
            echo "knockd at $size: 'Stage 1' lines in its log = $(grep -c ': Stage 1$' "$WORK/t1-knockd.log" || true) (one per preloaded source: none dropped)" >>"$OUT/t1-checks.txt"
        fi
        log "  $d at $size: preload $(jq -c '{sent, wall_s, cpu_ms, timed_out}' "$OUT/t1-$d-$size-preload.json"), probe $(jq -c '{sent, wall_s, cpu_ms, timed_out}' "$OUT/t1-$d-$size-probe.json")"
        prev=$size
    done
    stop_daemon
done

# ---------------------------------------------------------------------------------------
log "test 5: CPU per packet at $RATES packets/s (100k SYNs from 30k spoofed sources)"
echo "$RATES" >"$OUT/t5-rates.txt"
write_configs t5 25 100000
for d in knockgate knockd; do
    start "$d" t5
    sleep 2
    i=0
    for rate in $RATES; do
        # First knocks from 30 000 sources, each 3 or 4 times (a restart of stage 1), at a
        # fixed rate; each rate from its own /16 so that the runs do not share state. One
        # batch: the daemon is waited for only at the end, and its CPU time counted from the
        # first packet until it is idle again.
        cl "$GEN" send "${GEN_TX[@]}" --src-base "10.$((64 + i)).0.0" --src-count 30000 \
            --count 100000 --port 7000 --rate "$rate" \
            --settle-pid "$DAEMON_PID" --batch 100000 --max-seconds "$PHASE_MAX" \
            >"$OUT/t5-$d-$rate.json"
        log "  $d at $rate/s: $(jq -c '{sent, pps, cpu_ms, timed_out, settled}' "$OUT/t5-$d-$rate.json")"
        i=$((i + 1))
    done
    stop_daemon
done

# ---------------------------------------------------------------------------------------
log "test 2: ${FLOOD_S} s spoofed-source SYN flood with 10 legitimate knocks"
write_configs t2 25 100000
for d in knockgate knockd; do
    start "$d" t2
    sleep 2
    before=$(gw "$GEN" mem --pid "$DAEMON_PID")
    rm -f "$WORK/stop-sampler"
    if [ "$d" = knockgate ]; then src=(--status "$STATUS"); else src=(--log "$WORK/t2-knockd.log"); fi
    ip netns exec "$GW" "$GEN" sample --pid "$DAEMON_PID" --out "$OUT/t2-$d-samples.tsv" --every-ms 1000 \
        --stop-file "$WORK/stop-sampler" --max-seconds $((FLOOD_S + 120)) "${src[@]}" &
    HELPERS+=($!)
    # First knocks from 10.0.0.0/8, each source once (the flood never wraps around at these
    # rates), at the highest rate the generator sustains; 10 legitimate knocks from
    # 192.168.78.1-10 spread through it.
    cl "$GEN" flood "${GEN_TX[@]}" --src-base 10.0.0.0 --src-count 16777216 --port 7000 \
        --duration "$FLOOD_S" --max-packets 200000000 --legit 10 --legit-base 192.168.78.1 \
        --seq 7000,8000,9000 >"$OUT/t2-$d-flood.json"
    end=$(gw "$GEN" mem --pid "$DAEMON_PID")
    # Let it drain what its capture buffer still holds (bounded).
    settle=$(gw "$GEN" quiet --pid "$DAEMON_PID" --max-seconds 60)
    sleep 2
    final=$(gw "$GEN" mem --pid "$DAEMON_PID")
    opened=$(gw iptables -w -S KNOCKD | { grep -o -- '-s 192\.168\.78\.[0-9]*' || true; } | sort -u | wc -l)
    if [ "$d" = knockgate ]; then
        received=$(kg_counter packets)
        queue_full=$(kg_counter dropped_queue)
        stage1=null
    else
        received=null
        queue_full=null
        stage1=$(grep -c ': Stage 1$' "$WORK/t2-knockd.log" || true)
    fi
    touch "$WORK/stop-sampler"
    sleep 1.5
    jq -n --argjson b "$before" --argjson e "$end" --argjson f "$final" --argjson s "$settle" \
        --argjson opened "$opened" --argjson received "$received" --argjson queue_full "$queue_full" --argjson stage1 "$stage1" \
        '{opened: $opened, received: $received, queue_full: $queue_full, stage1_lines: $stage1,
          rss_before_kb: $b.rss_kb, rss_end_kb: $e.rss_kb, rss_final_kb: $f.rss_kb,
          hwm_kb: $f.hwm_kb, cpu_ms: ($e.cpu_ms - $b.cpu_ms), drain: $s}' >"$OUT/t2-$d-result.json"
    log "  $d: $(jq -c '{sent, pps, softnet_drops}' "$OUT/t2-$d-flood.json") $(jq -c . "$OUT/t2-$d-result.json")"
    stop_daemon
done

# ---------------------------------------------------------------------------------------
T_END=$(date +%s)
echo "- total run time of bench/run.sh: $(((T_END - T_START) / 60)) min $(((T_END - T_START) % 60)) s" >>"$OUT/machine.md"

{
    echo "# knockgate vs knockd: benchmark results"
    echo
    echo "Written by \`bench/run.sh\` (issue #9); rerun it as root to refresh. Each figure comes"
    echo "from the same run, the same traffic and the same door (7000,8000,9000, SYN without ACK,"
    echo "opening 22/tcp in the KNOCKD chain), with a fresh daemon for every test; the method and"
    echo "its limits are in README.md, \"Benchmark against knockd\"."
    echo
    "$GEN" report --dir "$OUT"
} >"$RESULTS"
cat "$RESULTS"
log "written to $RESULTS; raw data in target/bench/last-run/"
