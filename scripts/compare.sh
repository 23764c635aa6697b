#!/usr/bin/env bash
# scripts/compare.sh: confab's `cargo bench` workloads against Redis and
# nats-server on this machine, in one run, so that anyone can repeat the
# table of docs/performance.md ("Against Redis 7 and nats-server 2.9").
#
# Each server runs alone on core 0 (taskset -c 0), the load on core 1
# (taskset -c 1), both at nice -20 when allowed (so that other work on the
# machine, a build, takes next to nothing from them), everything on
# 127.0.0.1. Every run gets a fresh server. Each run waits for a quiet
# machine first, and one during which other processes still used more than
# DISTURBED percent of a core is run again (at most ATTEMPTS times).
# Each workload runs ROUNDS times (default 3), interleaved across the three
# servers (confab, redis, nats, confab, redis, nats, ...); the table shows
# the median of each and the runs. Logs of every run stay in the run
# directory (target/compare/<time>/).
#
# Needs redis-server and nats-server on the PATH (Debian: apt-get install
# redis-server nats-server); cargo test never does. It times things, so run
# it where nothing else is being timed:
#
#   flock /tmp/bench.lock scripts/compare.sh
#
# Environment: ROUNDS (3), SECONDS_PER_RUN (2, as cargo bench), IDLE_HOLD
# (15: seconds idle connections are held before the server's memory is
# read; longer than cargo bench's 1.5 s, because Redis trims an idle
# client's buffers only after a few seconds and its allocator hands the
# pages back within ten), WORKLOADS
# (a space-separated subset of: fanout direct pingpong storm idle),
# SERVERS (confab redis nats), PORT_BASE (17100; confab, redis and nats
# use the next three ports).

set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-2}
IDLE_HOLD=${IDLE_HOLD:-15}
WORKLOADS=${WORKLOADS:-"fanout direct pingpong storm idle"}
PORT_BASE=${PORT_BASE:-17100}
STORM_IN_FLIGHT="10 100 1000"
SERVERS=${SERVERS:-"confab redis nats"}
# How long one load run may take, setup included (a storm on a slow server
# takes a minute or more), and how long a server may take to start or stop.
RUN_TIMEOUT=600
STORM_SETUP_TIMEOUT=500
SERVER_TIMEOUT=10

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

for tool in redis-server nats-server taskset timeout; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found" >&2; exit 1; }
done
if [ "$(nproc --all)" -lt 2 ]; then
    echo "compare.sh: needs two cores (server on 0, load on 1)" >&2
    exit 1
fi

# The servers and the load hold up to 10,000 connections each.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then
    echo "compare.sh: the open-file limit is $(ulimit -n), below 12000" >&2
    exit 1
fi

echo "building release binaries..." >&2
cargo build --release --quiet
bin=$root/target/release
run_dir=$root/target/compare/$(date +%Y%m%d-%H%M%S)
mkdir -p "$run_dir"
results=$run_dir/results.tsv
: >"$results"
"$bin/confab-load" --write-credentials "$run_dir/users.txt" --users 11000 2>/dev/null


# How servers and loads are started: pinned, and first in line for their
# core if this user may raise priorities.
on_core0=(taskset -c 0)
on_core1=(taskset -c 1)
if [ "$(nice -n -20 nice 2>/dev/null)" = -20 ]; then
    on_core0=(nice -n -20 taskset -c 0)
    on_core1=(nice -n -20 taskset -c 1)
fi

server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_of() {
    case $1 in
        confab) echo $((PORT_BASE + 1)) ;;
        redis) echo $((PORT_BASE + 2)) ;;
        nats) echo $((PORT_BASE + 3)) ;;
    esac
}

# start_server NAME LOG: a fresh server on core 0; sets server_pid.
start_server() {
    local name=$1 log=$2 port
    port=$(port_of "$name")
    case $name in
        confab)
            "${on_core0[@]}" "$bin/confab-server" "$port" 60 3600 \
                --credentials "$run_dir/users.txt" --max-clients 12000 --ephemeral \
                >"$log" 2>&1 &
            ;;
        redis)
            "${on_core0[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' \
                --appendonly no --maxclients 12000 --tcp-backlog 1024 \
                >"$log" 2>&1 &
            ;;
        nats)
            "${on_core0[@]}" nats-server -a 127.0.0.1 -p "$port" >"$log" 2>&1 &
            ;;
    esac
    server_pid=$!
    local waited=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$server_pid" 2>/dev/null || [ $waited -ge $((SERVER_TIMEOUT * 10)) ]; then
            echo "compare.sh: $name did not start; see $log" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # Let the probe's connection go before anything is measured.
    sleep 0.3
}

stop_server() {
    local waited=0
    kill "$server_pid" 2>/dev/null || true
    while kill -0 "$server_pid" 2>/dev/null && [ $waited -lt $((SERVER_TIMEOUT * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

hz=$(getconf CLK_TCK)

# CPU seconds (user + system) the server has used so far (0 once it is
# gone: the run fails anyway).
server_cpu() {
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$server_pid/stat" 2>/dev/null || echo 0
}

# CPU seconds the processes of the whole machine have used so far, every
# core (user, nice, system: not interrupts, whose loopback work is the
# runs' own and is charged to no process, nor steal).
machine_cpu() {
    awk -v hz="$hz" '/^cpu / { printf "%.2f", ($2 + $3 + $4) / hz }' /proc/stat
}

# CPU seconds the kernel's softirq threads have used so far: the loopback
# traffic of the runs themselves, when the kernel defers it to them. They
# are found once: kernel threads stay, while a glob over every process
# would race with processes that end.
softirq_stats=()
for comm in /proc/[0-9]*/comm; do
    if [[ $(cat "$comm" 2>/dev/null) == ksoftirqd/* ]]; then
        softirq_stats+=("${comm%/comm}/stat")
    fi
done
softirq_cpu() {
    if [ ${#softirq_stats[@]} -eq 0 ]; then
        echo 0
        return
    fi
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.2f", t / hz }' \
        "${softirq_stats[@]}"
}

# CPU seconds this shell's finished children have used so far (the load):
# the shell's own cutime and cstime, read from outside it (a subshell's
# `times` would count only its own children).
children_cpu() {
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f", ($14 + $15) / hz }' "/proc/$$/stat"
}

# Waits (at most QUIET_WAIT seconds) until the machine is quiet: less than
# a tenth of a core busy over a second. Others' builds would slow a run.
QUIET_WAIT=${QUIET_WAIT:-60}
wait_quiet() {
    local waited=0 a b
    while [ $waited -lt "$QUIET_WAIT" ]; do
        a=$(machine_cpu)
        sleep 1
        b=$(machine_cpu)
        if awk -v a="$a" -v b="$b" 'BEGIN { exit !(b - a < 0.1) }'; then
            return
        fi
        waited=$((waited + 1))
        [ $((waited % 30)) -eq 0 ] && echo "compare.sh: waiting for a quiet machine (${waited} s)" >&2
    done
    echo "compare.sh: the machine is still busy after ${QUIET_WAIT} s; running anyway" >&2
}

# set_command NAME WORKLOAD [IN_FLIGHT]: sets cmd to the load command of one
# run, on core 1.
set_command() {
    local name=$1 workload=$2 in_flight=${3:-}
    local args=(--target "127.0.0.1:$(port_of "$name")" --workload "$workload")
    case $workload in
        idle) args+=(--duration "$IDLE_HOLD" --server-pid "$server_pid" --setup-timeout 120) ;;
        storm)
            args+=(--clients 5000 --in-flight "$in_flight" --drain 10
                --setup-timeout "$STORM_SETUP_TIMEOUT")
            ;;
        *) args+=(--duration "$SECONDS_PER_RUN" --setup-timeout 120) ;;
    esac
    if [ "$name" = confab ]; then
        cmd=("${on_core1[@]}" "$bin/confab-load" "${args[@]}")
    else
        cmd=("${on_core1[@]}" "$bin/confab-peer" --peer "$name" "${args[@]}")
    fi
}

# The figure of a report, in the row's unit (storm: seconds).
figure_of() {
    awk '/^figure/ { v = $2; if ($3 == "ms") v = v / 1000; print v; exit }' "$1"
}
# p50 and p99 of a report's latency line, as "136µs/230µs".
latency_of() {
    awk '/^latency/ { printf "%s%s/%s%s", $3, $4, $6, $7; exit }' "$1"
}
lost_of() {
    awk '/^delivered/ { print $7; exit }' "$1"
}

# A run during which other processes used more than this share of a core
# (in percent) is run again, at most ATTEMPTS times in all.
DISTURBED=${DISTURBED:-10}
ATTEMPTS=${ATTEMPTS:-3}

# run_one ROW NAME ROUND WORKLOAD [IN_FLIGHT]: one run, appended to the
# results, run again if others disturbed it.
run_one() {
    local row=$1 name=$2 round=$3 workload=$4 in_flight=${5:-}
    local attempt line
    for attempt in $(seq 1 "$ATTEMPTS"); do
        attempt_one "$row" "$name" "$round" "$workload" "$in_flight" "$attempt"
        line=$result_line
        if awk -F'\t' -v most="$DISTURBED" '{ sub(/%/, "", $8); exit !($8 + 0 <= most) }' \
            <<<"$line" || [ "$attempt" -eq "$ATTEMPTS" ]; then
            printf '%s\n' "$line" >>"$results"
            return
        fi
        echo "compare.sh: other processes disturbed that run; again" >&2
    done
}

# attempt_one ROW NAME ROUND WORKLOAD IN_FLIGHT ATTEMPT: one run on a fresh
# server; sets result_line to its line of the results.
attempt_one() {
    local row=$1 name=$2 round=$3 workload=$4 in_flight=$5 attempt=$6
    local stem=$run_dir/$row-$name-$round-$attempt
    wait_quiet
    start_server "$name" "$stem.server.log"
    local cmd cpu0 cpu1 all0 all1 load0 load1 soft0 soft1 t0 t1 status=0
    set_command "$name" "$workload" "$in_flight"
    echo "${cmd[*]}" >"$stem.cmd"
    cpu0=$(server_cpu)
    all0=$(machine_cpu)
    load0=$(children_cpu)
    soft0=$(softirq_cpu)
    t0=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" "${cmd[@]}" >"$stem.out" 2>"$stem.err" || status=$?
    t1=$(date +%s.%N)
    cpu1=$(server_cpu)
    all1=$(machine_cpu)
    load1=$(children_cpu)
    soft1=$(softirq_cpu)
    stop_server
    local figure latency lost busy other
    if [ $status -ne 0 ]; then
        figure=failed
        echo "compare.sh: $row $name round $round failed ($status); see $stem.err" >&2
    else
        figure=$(figure_of "$stem.out")
    fi
    latency=$(latency_of "$stem.out")
    lost=$(lost_of "$stem.out")
    busy=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" \
        'BEGIN { printf "%.0f%%", 100 * (b - a) / (e - s) }')
    # What neither the server nor the load (nor their loopback traffic)
    # used: someone else's work.
    other=$(awk -v s="$t0" -v e="$t1" -v a0="$all0" -v a1="$all1" -v c0="$cpu0" \
        -v c1="$cpu1" -v l0="$load0" -v l1="$load1" -v k0="$soft0" -v k1="$soft1" \
        'BEGIN { o = (a1 - a0) - (c1 - c0) - (l1 - l0) - (k1 - k0); if (o < 0) o = 0
                 printf "%.0f%%", 100 * o / (e - s) }')
    printf -v result_line '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$row" "$name" "$round" \
        "$figure" "$latency" "${lost:-}" "$busy" "$other"
    echo "$row $name round $round: $figure ${latency:+($latency) }lost ${lost:-?}," \
        "server busy $busy, others $other" >&2
}

rows=()
for workload in $WORKLOADS; do
    if [ "$workload" = storm ]; then
        for k in $STORM_IN_FLIGHT; do rows+=("storm-$k"); done
    else
        rows+=("$workload")
    fi
done

started=$(date +%s)
for row in "${rows[@]}"; do
    workload=${row%%-*}
    in_flight=
    [ "$workload" = storm ] && in_flight=${row#storm-}
    for round in $(seq 1 "$ROUNDS"); do
        for name in $SERVERS; do
            run_one "$row" "$name" "$round" "$workload" "$in_flight"
        done
    done
done
elapsed=$(($(date +%s) - started))

# ----- the table ---------------------------------------------------------

# median ROW NAME: the median figure of the row's runs, and the runs.
median() {
    awk -F'\t' -v row="$1" -v name="$2" '
        $1 == row && $2 == name && $4 != "failed" { v[n++] = $4 }
        END {
            if (n == 0) { print "failed"; exit }
            # insertion sort, n is small
            for (i = 1; i < n; i++) for (j = i; j > 0 && v[j-1] + 0 > v[j] + 0; j--) {
                t = v[j]; v[j] = v[j-1]; v[j-1] = t
            }
            print v[int((n - 1) / 2)]
        }' "$results"
}
runs() {
    awk -F'\t' -v row="$1" -v name="$2" '
        $1 == row && $2 == name { printf "%s%s", (n++ ? " / " : ""), $4 }' "$results"
}
# The latency and lost count of the run whose figure is the median.
median_field() {
    local med=$3
    awk -F'\t' -v row="$1" -v name="$2" -v med="$med" -v f="$4" '
        $1 == row && $2 == name && $4 == med { print $f; exit }' "$results"
}
human() {
    awk -v v="$1" -v row="$2" 'BEGIN {
        if (v !~ /^-?[0-9.]+$/) { print v; exit }
        if (row ~ /^storm/) printf "%.2f s", v
        else if (row == "idle") printf "%.0f B", v
        else if (v >= 1e6) printf "%.2fM", v / 1e6
        else if (v >= 1e3) printf "%.0fk", v / 1e3
        else printf "%.0f", v
    }'
}
unit_of() {
    case $1 in
        fanout) echo "deliveries/s" ;;
        direct | pingpong) echo "messages/s" ;;
        storm-*) echo "seconds to the last presence" ;;
        idle) echo "server RSS per connection" ;;
    esac
}

{
    echo
    echo "confab vs Redis vs nats-server: median of $ROUNDS (runs in brackets), server on core 0, load on core 1"
    echo "confab $(git rev-parse --short HEAD), $(redis-server --version | awk '{print $1, $3}'), $(nats-server --version)"
    echo "server: ${on_core0[*]}; load: ${on_core1[*]}"
    echo "$(nproc --all) cores: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
    echo
    printf '| %s | %s | %s | %s | %s |\n' "row" "unit" "confab" "Redis" "nats-server"
    printf '|---|---|---|---|---|\n'
    for row in "${rows[@]}"; do
        cells=()
        for name in $SERVERS; do
            med=$(median "$row" "$name")
            cell="**$(human "$med" "$row")**"
            lat=$(median_field "$row" "$name" "$med" 5)
            [ "$row" = pingpong ] && [ -n "$lat" ] && cell="$cell, p50/p99 $lat"
            lost=$(median_field "$row" "$name" "$med" 6)
            [ -n "$lost" ] && [ "$lost" != 0 ] && cell="$cell, lost $lost"
            cells+=("$cell ($(runs "$row" "$name"))")
        done
        printf '| %s | %s | %s | %s | %s |\n' "$row" "$(unit_of "$row")" "${cells[@]}"
    done
    if [[ " ${rows[*]} " == *" direct "* ]]; then
        c=$(median direct confab)
        n=$(median direct nats)
        awk -v c="$c" -v n="$n" 'BEGIN {
            if (c ~ /^[0-9.]+$/ && n ~ /^[0-9.]+$/ && n > 0)
                printf "\ndirect: confab / nats-server = %.2f (confab %.2fM, nats-server %.2fM messages/s)\n", c / n, c / 1e6, n / 1e6
        }'
    fi
    echo
    echo "server CPU while each run lasted (median run), busy of one core:"
    for row in "${rows[@]}"; do
        line="  $row:"
        for name in $SERVERS; do
            med=$(median "$row" "$name")
            line="$line $name $(median_field "$row" "$name" "$med" 7)"
        done
        echo "$line"
    done
    awk -F'\t' '{ sub(/%/, "", $8); if ($8 + 0 > max) max = $8 + 0 }
        END { printf "most CPU used by other processes during a run: %d%% of a core\n", max }' "$results"
    echo "total ${elapsed} s; logs in $run_dir"
} | tee "$run_dir/table.md"
