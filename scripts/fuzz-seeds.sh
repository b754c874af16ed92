#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets, fuzz/corpus/<target>/seed-*, from real inputs:
# - wire: the parser's packet fixtures (src/net/wire.rs), and real knocks (Debian's `knock`)
#   captured on loopback by tcpdump as Ethernet, Linux cooked v1 and v2; the first byte of a
#   seed is the link type's index in LinkType::ALL;
# - config: examples/knockgate.toml and src/config/builtin.toml;
# - knockd_import: Debian's /etc/knockd.conf and the four examples of knockd(1);
# - journal: journals written by the daemon's own code (src/actions/sessions.rs);
# - otp: one-time sequence files as knockd(1) describes them;
# - http: requests that curl and wget really send, captured with nc, and hand-written ones
#   (a browser's GET, HEAD, bad and hostile requests);
# - spa: datagrams built by Debian's fwknop client, and its message fields.
# The seeds are committed; run this only to regenerate them. Needs root (tcpdump) and the
# packages of scripts/setup.sh. Knocks and requests go to loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
mkdir -p "$corpus"/{wire,config,knockd_import,journal,otp,http,spa}

echo "== wire fixtures and journals (ignored unit tests that write seeds)"
cargo test --quiet --lib write_fuzz_seeds -- --ignored >/dev/null

echo "== real knocks captured on loopback"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (link type name for tcpdump -y, interface, index in LinkType::ALL)
captures=("EN10MB lo 0" "LINUX_SLL any 1" "LINUX_SLL2 any 2")
pids=()
for c in "${captures[@]}"; do
    read -r dlt iface index <<<"$c"
    tcpdump -q -i "$iface" -y "$dlt" -c 4 -w "$tmp/$index.pcap" \
        'dst port 7100 or dst port 8100' 2>/dev/null &
    pids+=($!)
done
sleep 1.5
knock 127.0.0.1 7100 8100:udp
knock -6 ::1 7100 8100:udp
for p in "${pids[@]}"; do
    # tcpdump ends after 4 packets; give it a moment, then stop it.
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
done
python3 - "$tmp" "$corpus/wire" <<'EOF'
import struct, sys, pathlib
tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
names = {0: "eth", 1: "sll", 2: "sll2"}
for index, prefix in names.items():
    data = (tmp / f"{index}.pcap").read_bytes()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "a little-endian pcap"
    pos, n = 24, 0
    while pos + 16 <= len(data):
        caplen = struct.unpack("<I", data[pos + 8:pos + 12])[0]
        packet = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        n += 1
        (out / f"seed-real-{prefix}-knock{n}").write_bytes(bytes([index]) + packet)
    assert n == 4, f"{prefix}: {n} packets captured, expected 4"
EOF

echo "== configs"
cp examples/knockgate.toml "$corpus/config/seed-example.toml"
cp src/config/builtin.toml "$corpus/config/seed-builtin.toml"

echo "== knockd.conf files"
cp /etc/knockd.conf "$corpus/knockd_import/seed-debian-knockd.conf"
zcat /usr/share/man/man1/knockd.1.gz | awk -v dir="$corpus/knockd_import" '
    /^\.SH Example #/ { n = substr($3, 2, 1) }
    /^\.nf/ && n { out = dir "/seed-man-example" n ".conf"; next }
    /^\.fi/ { out = ""; n = ""; next }
    out { gsub(/\\-/, "-"); print > out }'

echo "== one-time sequences"
printf '# used\n#7000,8000,9000\n1000,2000:udp,3000\n4000 5000/tcp 6000\n' >"$corpus/otp/seed-list"
printf '7000:udp,8000:tcp,9000:udp\r\n\r\n   \t1234,5678\r\n' >"$corpus/otp/seed-crlf"

echo "== HTTP requests"
capture_request() { # NAME CLIENT-COMMAND...: what the client sends, captured by nc
    local name=$1 port
    shift
    port=$((20000 + RANDOM % 20000))
    timeout 5 nc -l 127.0.0.1 "$port" >"$corpus/http/seed-$name" &
    local nc_pid=$!
    sleep 0.3
    "$@" "http://127.0.0.1:$port/api/status" >/dev/null 2>&1 || true
    wait "$nc_pid" || true
    [ -s "$corpus/http/seed-$name" ] || { echo "fuzz-seeds.sh: no request from $1" >&2; exit 1; }
}
capture_request curl curl -s -m 1
capture_request curl-head curl -s -m 1 -I
capture_request wget wget -q -T 1 -t 1 -O -
h="$corpus/http"
printf 'GET / HTTP/1.1\r\nHost: gw.lan:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate\r\nAccept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n' >"$h/seed-browser"
printf 'GET /metrics HTTP/1.1\r\nHost: [fd00::1]:8080\r\nUser-Agent: Prometheus/2.45.0\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n' >"$h/seed-prometheus"
printf 'GET /healthz HTTP/1.0\n\n' >"$h/seed-http10-lf"
# Empty lines before the request line are skipped (RFC 9112 2.2): a CI fuzz run found that.
printf '\r\nGET / HTTP/1.1\r\nHost: gw.lan\r\n\r\n' >"$h/seed-leading-empty-line"
printf 'HEAD /?refresh=5#top HTTP/1.1\r\nHost: localhost\r\n\r\n' >"$h/seed-head-query"
printf 'POST /api/status HTTP/1.1\r\nHost: 192.168.1.1\r\nContent-Length: 5\r\n\r\nhello' >"$h/seed-post-body"
printf 'GET / HTTP/1.1\r\nHost: evil.example\r\nTransfer-Encoding: chunked\r\n\r\n' >"$h/seed-rebinding-chunked"
printf 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n' >"$h/seed-duplicates"
printf 'GET http://gw.lan/ HTTP/2.0\r\n folded: x\r\n\r\n' >"$h/seed-bad"
# Longer than the server's 8 KiB head limit (431), so that libFuzzer's inputs may be too.
{ printf 'GET / HTTP/1.1\r\nHost: gw.lan\r\nCookie: '; head -c 9000 /dev/zero | tr '\0' a
    printf '\r\n\r\n'; } >"$h/seed-long-header"

echo "== SPA: datagrams built by Debian's fwknop client (fwknop --test: nothing sent)"
# The keys fuzz_targets/spa.rs knows. Mode byte 0: a raw datagram; 1: message fields.
spa_k=eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug=
spa_h=VNrfU/1Pichlo/Kg61u8pMHCMoLk4PyQfVACF6UxTYG/bpN3D5/ciou6JoJngnTQ+AHRIbBpyeKMyXTpsWAujg==
spa_seed() { # NAME FWKNOP-ARGS...
    local name=$1
    shift
    HOME=$tmp fwknop --key-base64-rijndael "$spa_k" --key-base64-hmac "$spa_h" --use-hmac \
        -D 127.0.0.1 --test --save-packet "$tmp/spa" "$@" >/dev/null
    { printf '\000'; cat "$tmp/spa"; } >"$corpus/spa/seed-fwknop-$name"
}
spa_seed tcp22 -A tcp/22 -a 10.77.0.2
spa_seed two-ports-timeout -A tcp/22,udp/53 -a 192.0.2.9 -f 45
spa_seed source -A tcp/22 -s
# Message fields as the client writes them (its -v output), to reach every field parser.
printf '\0011256805244119285:cm9vdA:1796029673:3.0.0:1:MTAuNzcuMC4yLHRjcC8yMg' \
    >"$corpus/spa/seed-fields-access"
printf '\0011256805244119285:cm9vdA:1796029673:3.0.0:3:MTkyLjAuMi45LHRjcC8yMix1ZHAvNTM:45' \
    >"$corpus/spa/seed-fields-timeout"

find "$corpus" -type f | wc -l | xargs echo "seeds:"
du -sh "$corpus"
