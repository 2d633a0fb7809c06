#!/usr/bin/env bash
# ir-client against skopeo: pull the 256 MiB test image (bench/gen_compare.py
# `content`: one 256 MiB layer and a 64 KiB one) from ir-server over plain
# HTTP into an OCI layout, side by side, ROUNDS times each, alternating.
# Prints the median wall time of each and the ratio. Both verify every
# digest; both write fresh layouts (no blob reuse).
#
# Usage: bench/client.sh            (release builds are made if missing)
# Env:   ROUNDS=5 BIG_MIB=256 CONCURRENCY=4 IR_SERVER_BIN IR_CLIENT_BIN
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
: "${ROUNDS:=5}" "${BIG_MIB:=256}" "${CONCURRENCY:=4}"
SERVER=${IR_SERVER_BIN:-$root/target/release/ir-server}
CLIENT=${IR_CLIENT_BIN:-$root/target/release/ir-client}
[[ -x $SERVER && -x $CLIENT ]] || (cd "$root" && cargo build --release -p ir-server -p ir-client)
command -v skopeo >/dev/null || { echo "skopeo is needed" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 "$here/gen_compare.py" content "$work/reg" --big-mib "$BIG_MIB" --extra-apps 0 >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" -r "$work/reg" -p "$port" --bind 127.0.0.1 -t no-tls >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done

now() { date +%s.%N; }
ir=() sk=()
for i in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/ir" "$work/sk"
  t0=$(now)
  "$CLIENT" pull "http://127.0.0.1:$port/team/app:t00" --out "$work/ir" -q \
    --concurrency "$CONCURRENCY" >/dev/null
  t1=$(now)
  skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/team/app:t00" "oci:$work/sk:t00"
  t2=$(now)
  ir+=("$(echo "$t1 - $t0" | bc)") sk+=("$(echo "$t2 - $t1" | bc)")
  echo "round $i: ir-client ${ir[-1]} s, skopeo ${sk[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mi=$(median "${ir[@]}") ms=$(median "${sk[@]}")
mib=$(echo "$BIG_MIB + 0.0625" | bc)
echo "median: ir-client $mi s ($(echo "scale=0; $mib / $mi" | bc) MiB/s), skopeo copy $ms s ($(echo "scale=0; $mib / $ms" | bc) MiB/s), ratio skopeo/ir-client $(echo "scale=2; $ms / $mi" | bc)"
