#!/bin/bash
# guests.sh - QEMU guests as a KSM client: samepage against kernel KSM.
#
#   scripts/qemu/guests.sh [-n GUESTS] [-m GUEST_MIB] [-f FILL_MIB]
#                          [--modes "ksm samepage"]
#                          [--converge-timeout S] [--stable S] [--out DIR]
#                          [--pages-to-scan N] [--sleep-millisecs N] [--check-s S]
#
# For each mode it starts GUESTS identical TCG guests (Debian's kernel, a
# busybox initramfs whose init fills FILL_MIB MiB with a deterministic
# pattern, page-distinct inside a guest and identical across guests, and
# re-checks it every CHECK_S seconds; see guest-fill.c) with
# -machine pc,mem-merge=on, waits for every guest's GUEST-READY, measures
# the qemu processes' Pss, then lets the merger run at full speed
# (pages_to_scan 10000, sleep_millisecs 0, unless given) until pages_sharing stops
# growing, measures again, checks that every guest still verifies its
# memory, and stops the guests.
#
# Modes:
#   ksm            kernel KSM (/sys/kernel/mm/ksm/run=1); restored after.
#   samepage       `build/samepage run -- qemu-system-x86_64 ...`, kernel
#                  KSM off, a private samepaged (SAMEPAGE_SOCKET under the
#                  output dir, so other users of the uid do not count).
#   samepage-nodc  the same with scripts/qemu/nodontfork.c preloaded
#                  after the shim: QEMU's MADV_DONTFORK on guest RAM
#                  becomes a no-op (the workaround before samepage kept
#                  DONTFORK; not run by default).
# Merging is off while the guests boot (KSM run=0; samepage run --run 0
# and `samepage set run 0`) and switched on once all are ready, so
# "before" is the same point for every mode.
#
# Output: DIR (default build/qemu/run) holds each mode's guest serial
# logs, a time series (MODE/series.tsv) and summary.txt (the table).
# Needs root (kernel KSM's knobs; samepage needs a usable userfaultfd).
# Holds /run/lock/samepage-ksm-knobs.lock (flock) throughout, as
# bench/ksm_compare does, so the two never drive KSM's knobs at once.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
SP=$repo/build/samepage

GUESTS=2
GUEST_MIB=256
FILL_MIB=128
CHECK_S=10
MODES="ksm samepage"
CONVERGE_TIMEOUT=150	# seconds of merging at most
STABLE_S=20		# converged: no growth above 1% for this long
BOOT_TIMEOUT=180
OUT=$repo/build/qemu/run
PTS=10000
SLEEP_MS=0
POLL_S=0.5
KSM_WAIT=900		# wait this long for other users of kernel KSM to finish

while [ $# -gt 0 ]; do
	case "$1" in
	-n) GUESTS=$2; shift 2 ;;
	-m) GUEST_MIB=$2; shift 2 ;;
	-f) FILL_MIB=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--converge-timeout) CONVERGE_TIMEOUT=$2; shift 2 ;;
	--stable) STABLE_S=$2; shift 2 ;;
	--check-s) CHECK_S=$2; shift 2 ;;
	--pages-to-scan) PTS=$2; shift 2 ;;
	--sleep-millisecs) SLEEP_MS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//;/^set -eu/d'; exit 0 ;;
	*) echo "guests.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

[ "$(id -u)" = 0 ] || { echo "guests.sh: run as root (kernel KSM knobs)" >&2; exit 1; }
KSM=/sys/kernel/mm/ksm
[ -w $KSM/run ] || { echo "guests.sh: no $KSM (kernel without KSM?)" >&2; exit 1; }

# ---- cleanup: guests, our samepaged, kernel KSM knobs ----------------------
PIDS=()			# qemu pids of the current mode
DAEMON_PID=""
KSM_SAVED=""
cleanup() {
	local p
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	PIDS=()
	[ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=""
	if [ -n "$KSM_SAVED" ]; then
		echo 0 > $KSM/run
		read -r pts slp <<< "$KSM_SAVED"
		echo "$pts" > $KSM/pages_to_scan
		echo "$slp" > $KSM/sleep_millisecs
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- what we need ------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "guests.sh: installing qemu-system-x86" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 >/dev/null ||
		{ apt-get update -q >/dev/null &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 >/dev/null; }
fi
[ -x "$SP" ] || make -C "$repo" >/dev/null
IMG=$repo/build/qemu/img
"$here/mkimage.sh" "$IMG"
NODC=$repo/build/qemu/libnodontfork.so
if [ ! -s "$NODC" ] || [ "$here/nodontfork.c" -nt "$NODC" ]; then
	gcc -O2 -shared -fPIC -Wall -o "$NODC" "$here/nodontfork.c"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt

now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
pss_of() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
pss_sum() {	# kB over the guests (and our samepaged)
	local p s=0
	for p in "${PIDS[@]}" $DAEMON_PID; do s=$((s + $(pss_of "$p"))); done
	echo $s
}
pss_guests() {
	local p s=0
	for p in "${PIDS[@]}"; do s=$((s + $(pss_of "$p"))); done
	echo $s
}
vmas_max() {
	local p m=0 v
	for p in "${PIDS[@]}"; do v=$(wc -l < "/proc/$p/maps"); [ "$v" -gt "$m" ] && m=$v; done
	echo $m
}
ksmd_cpu() {	# ksmd's CPU time, centiseconds... in clock ticks
	local k
	k=$(pgrep -x ksmd | head -1)
	[ -n "$k" ] && awk '{ print $14 + $15 }' "/proc/$k/stat" || echo 0
}

# counters: "sharing shared merging_of_our_guests cpu_s full_scans"
counters() {
	local mode=$1 p m=0 v
	if [ "$mode" = ksm ]; then
		for p in "${PIDS[@]}"; do
			v=$(cat "/proc/$p/ksm_merging_pages" 2>/dev/null || echo 0)
			m=$((m + v))
		done
		echo "$(cat $KSM/pages_sharing) $(cat $KSM/pages_shared) $m" \
		     "$(awk -v t="$(ksmd_cpu)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')" \
		     "$(cat $KSM/full_scans)"
	else
		for p in "${PIDS[@]}"; do
			v=$("$SP" stat --pid "$p" 2>/dev/null | awk '$1 == "ksm_merging_pages" { print $2 }')
			m=$((m + ${v:-0}))
		done
		"$SP" stat 2>/dev/null | awk -v m=$m '
			{ v[$1] = $2 }
			END { printf "%d %d %d %.2f %d\n", v["pages_sharing"], v["pages_shared"], m,
			      (v["cpu_ns"] + v["daemon_cpu_ns"]) / 1e9, v["full_scans"] }'
	fi
}

# Processes other than ours that kernel KSM scans (a benchmark of someone
# else would change its knobs and its global counters under us).
other_ksm_users() {
	local f d
	for f in /proc/[0-9]*/ksm_stat; do
		d=${f%/ksm_stat}
		grep -qs "ksm_mergeable: yes" "$f" || continue
		case " ${PIDS[*]} " in *" ${d#/proc/} "*) continue ;; esac
		printf ' %s(%s)' "${d#/proc/}" "$(cat "$d/comm" 2>/dev/null)"
	done
	return 0
}

qemu_args() {	# $1: guest index
	echo "-name sp-guest-$1 -machine pc,mem-merge=on -accel tcg -m $GUEST_MIB -smp 1" \
	     "-nodefaults -display none -no-reboot -monitor none" \
	     "-kernel $IMG/vmlinuz -initrd $IMG/initrd.gz" \
	     "-serial file:$RUN/guest$1.log"
}
APPEND="console=ttyS0 quiet loglevel=3 panic=-1 fill_mib=$FILL_MIB check_s=$CHECK_S"

# Wait until every guest log has $2 lines matching $1 (or a guest dies).
wait_logs() {
	local pat=$1 want=$2 timeout=$3 t0 i n ok
	t0=$(date +%s)
	while :; do
		ok=1
		for i in $(seq 0 $((GUESTS - 1))); do
			kill -0 "${PIDS[$i]}" 2>/dev/null ||
				{ echo "guest $i (pid ${PIDS[$i]}) died; log:" >&2; cat "$RUN/guest$i.log" "$RUN/guest$i.err" >&2; return 1; }
			n=$(grep -c -- "$pat" "$RUN/guest$i.log" 2>/dev/null || true)
			[ "${n:-0}" -ge "$want" ] || ok=0
		done
		[ $ok = 1 ] && return 0
		[ $(( $(date +%s) - t0 )) -lt "$timeout" ] || { echo "timeout waiting for $pat x$want" >&2; return 1; }
		sleep 0.5
	done
}

# ---- one mode ------------------------------------------------------------------
run_mode() {
	local mode=$1 i t0 t tl best cpu_conv disturbed="" fs fs0 before_all before_g before_used sh shd mg cpu0 cpu
	local after_all after_g after_used conv="" status
	RUN=$OUT/$mode
	rm -rf "$RUN"; mkdir -p "$RUN"
	PIDS=()
	echo 0 > $KSM/run
	if [ "$mode" != ksm ]; then
		mkdir -m 700 "$RUN/sock"
		export SAMEPAGE_SOCKET=$RUN/sock/samepaged.sock
		# Start our daemon and stop merging domain-wide before any guest.
		"$SP" run --run 0 -- true
		"$SP" set run 0 && "$SP" set pages_to_scan $PTS && "$SP" set sleep_millisecs $SLEEP_MS
		for f in /proc/[0-9]*/environ; do
			if { tr '\0' '\n' < "$f"; } 2>/dev/null | grep -qx "SAMEPAGE_SOCKET=$SAMEPAGE_SOCKET" &&
			   [ "$(cat "${f%/environ}/comm" 2>/dev/null)" = samepaged ]; then
				DAEMON_PID=$(basename "${f%/environ}")
			fi
		done
	fi
	if [ "$mode" = ksm ]; then
		local w=0 o
		while o=$(other_ksm_users) && [ -n "$o" ] && [ $w -lt $KSM_WAIT ]; do
			[ $w = 0 ] && echo "   waiting (up to $KSM_WAIT s) for other users of kernel KSM to finish:$o" >&2
			sleep 5; w=$((w + 5))
		done
		[ -n "$(other_ksm_users)" ] && { echo "   WARNING: kernel KSM still used by:$(other_ksm_users)" >&2; disturbed=" SHARED-KSM"; }
	fi
	echo "== $mode: starting $GUESTS guests ($GUEST_MIB MiB, fill $FILL_MIB MiB)" >&2
	for i in $(seq 0 $((GUESTS - 1))); do
		case $mode in
		ksm)
			# shellcheck disable=SC2046
			qemu-system-x86_64 $(qemu_args $i) -append "$APPEND" \
				> "$RUN/guest$i.err" 2>&1 &
			;;
		samepage)
			# shellcheck disable=SC2046
			"$SP" run --run 0 --pages-to-scan $PTS --sleep-millisecs $SLEEP_MS -- \
				qemu-system-x86_64 $(qemu_args $i) -append "$APPEND" \
				> "$RUN/guest$i.err" 2>&1 &
			;;
		samepage-nodc)
			# shellcheck disable=SC2046
			LD_PRELOAD=$NODC "$SP" run --run 0 --pages-to-scan $PTS --sleep-millisecs $SLEEP_MS -- \
				qemu-system-x86_64 $(qemu_args $i) -append "$APPEND" \
				> "$RUN/guest$i.err" 2>&1 &
			;;
		*) echo "unknown mode $mode" >&2; return 1 ;;
		esac
		PIDS+=($!)
	done
	t0=$(now)
	wait_logs GUEST-READY 1 $BOOT_TIMEOUT || return 1
	echo "   all ready after $(fsub "$(now)" "$t0") s" >&2
	# the guest RAM block's VMA flags, as the merger sees them
	awk -v sz=$((GUEST_MIB * 1024)) '/^[0-9a-f]+-[0-9a-f]+ / { h = $1 } /^Size:/ { s = $2 }
		/^VmFlags:/ && s == sz { sub(/^VmFlags: */, ""); print "guest RAM VMA " h ": VmFlags " $0 }' \
		"/proc/${PIDS[0]}/smaps" | tee "$RUN/ram-vmflags.txt" | sed 's/^/   /' >&2
	ram_range=$(awk 'NR == 1 { sub(/:$/, "", $4); print $4 }' "$RUN/ram-vmflags.txt")
	sleep 1	# the fill's last page is written; let the guests settle
	before_all=$(pss_sum); before_g=$(pss_guests)
	# what any merger could share: identical present pages of guest RAM
	local ideal ranges
	python3 "$here/dupcount.py" "${PIDS[@]}" > "$RUN/dupcount.txt"
	ideal=$(sed -n 's/.*ideal_sharing=\([0-9]*\).*/\1/p' "$RUN/dupcount.txt")
	ranges=$(sed -n 's/.*ranges=\([^ ]*\).*/\1/p' "$RUN/dupcount.txt")
	echo "   at ready: $(sed 's/ ranges=.*//' "$RUN/dupcount.txt")" >&2
	read -r _ _ _ cpu0 fs0 <<< "$(counters "$mode")"
	# ---- merge -------------------------------------------------------------
	if [ "$mode" = ksm ]; then
		echo $PTS > $KSM/pages_to_scan
		echo $SLEEP_MS > $KSM/sleep_millisecs
		echo 1 > $KSM/run
	else
		"$SP" set run 1
	fi
	t0=$(now); tl=$t0; best=0; cpu_conv=$cpu0
	printf 't_s\tpages_sharing\tpages_shared\tmerging_pages_guests\tpss_kB\tmerger_cpu_s\n' > "$RUN/series.tsv"
	while :; do
		sleep $POLL_S
		t=$(now)
		read -r sh shd mg cpu fs <<< "$(counters "$mode")"
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(fsub "$t" "$t0")" "$sh" "$shd" "$mg" "$(pss_sum)" \
			"$(awk -v a="$cpu" -v b="$cpu0" 'BEGIN { printf "%.2f", a - b }')" >> "$RUN/series.tsv"
		for i in $(seq 0 $((GUESTS - 1))); do
			kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "guest $i died while merging" >&2; cat "$RUN/guest$i.err" >&2; return 1; }
		done
		# judged on our guests' own merging_pages: kernel KSM's global
		# counters also move with other users of KSM
		if awk -v c="$mg" -v b="$best" 'BEGIN { exit !(c > b * 1.01 + 16) }'; then
			best=$mg; tl=$t; cpu_conv=$cpu
		fi
		if [ "$mode" = ksm ] && [ -z "$disturbed" ] &&
		   { [ "$(cat $KSM/run)" != 1 ] || [ "$(cat $KSM/pages_to_scan)" != $PTS ] ||
		     [ -n "$(other_ksm_users)" ]; }; then
			echo "   WARNING: someone else used or changed kernel KSM while we measured:$(other_ksm_users)" >&2
			disturbed=" DISTURBED"
		fi
		# a merge needs two passes: judge only after three
		[ $((fs - fs0)) -ge 3 ] && [ "$(fsub "$t" "$tl" | cut -d. -f1)" -ge "$STABLE_S" ] &&
			{ conv=$(fsub "$tl" "$t0"); break; }
		[ "$(fsub "$t" "$t0" | cut -d. -f1)" -ge "$CONVERGE_TIMEOUT" ] && { conv=">$CONVERGE_TIMEOUT"; break; }
	done
	read -r sh shd mg cpu fs <<< "$(counters "$mode")"
	# CPU of the merger once converged, per second (it keeps scanning)
	local steady
	steady=$(awk -v a="$cpu" -v b="$cpu_conv" -v t="$(now)" -v l="$tl" 'BEGIN { printf "%.2f", (a - b) / (t - l) }')
	cpu=$(awk -v a="$cpu_conv" -v b="$cpu0" 'BEGIN { printf "%.1f", a - b }')
	after_all=$(pss_sum); after_g=$(pss_guests)
	local vmas; vmas=$(vmas_max)
	# the guest RAM's flags after merging: every VMA of it keeps 'dc'
	[ -n "${ram_range:-}" ] && ram_flags_after "${PIDS[0]}" "$ram_range" > "$RUN/ram-vmflags-after.txt"
	# the merger's own net saving, metadata subtracted (KSM: rmap_items x
	# 64 B of kernel slab, invisible in Pss; samepage: meta_bytes, in Pss)
	local profit
	if [ "$mode" = ksm ]; then
		profit=$(cat $KSM/general_profit)
	else
		profit=$("$SP" stat | awk '$1 == "general_profit" { print $2 }')
	fi
	profit=$(awk -v p="$profit" 'BEGIN { printf "%.0f", p / 1048576 }')
	# where the guest RAM pages are now (the guests stopped for the count)
	local kzero
	kill -STOP "${PIDS[@]}"
	python3 "$here/dupcount.py" --after "$ranges" > "$RUN/after.txt" || true
	kill -CONT "${PIDS[@]}"
	kzero=$(sed -n 's/.*zeropage=\([0-9]*\).*/\1/p' "$RUN/after.txt")
	echo "   guest RAM after: $(cat "$RUN/after.txt")" >&2
	# ---- the guests still compute right ------------------------------------------
	local nchk
	nchk=$(for i in $(seq 0 $((GUESTS - 1))); do grep -c GUEST-CHECK "$RUN/guest$i.log" || true; done | sort -n | tail -1)
	wait_logs GUEST-CHECK $((nchk + 2)) $((3 * CHECK_S + 30)) || return 1
	status=OK$disturbed
	for i in $(seq 0 $((GUESTS - 1))); do
		local s0
		s0=$(tr -d '\r' < "$RUN/guest$i.log" | sed -n 's/^GUEST-READY .*sum=\([0-9a-f]*\).*/\1/p')
		if tr -d '\r' < "$RUN/guest$i.log" | grep GUEST-CHECK | grep -v " sum=$s0 .* OK\$" >&2; then
			status=FAIL
		fi
	done
	# all guests hold the same bytes
	[ "$(cat "$RUN"/guest*.log | tr -d '\r' | sed -n 's/^GUEST-READY .*sum=//p' | sort -u | wc -l)" = 1 ] || status="FAIL(sums differ)"
	local checks; checks=$(cat "$RUN"/guest*.log | grep -c GUEST-CHECK || true)
	if [ "$mode" = ksm ]; then
		echo 0 > $KSM/run
	fi
	cleanup_guests
	printf '%-14s %6s %8s %8s %10s %10s %10s %8s %7s %13s %12s %7s %9s %7s %10s %11s %10s %8s %s\n' \
		"$mode" "$GUESTS" "$GUEST_MIB" "$FILL_MIB" \
		"$((before_all / 1024))" "$((after_all / 1024))" "$(((before_all - after_all) / 1024))" \
		"$(((after_all - after_g) / 1024))" "$profit" \
		"$sh" "$shd" "${ideal:-?}" "${kzero:-?}" "$mg" "$conv" "$cpu" "$steady" "$vmas" "$status ($checks checks)" >> "$SUMMARY.rows"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$before_g" "$after_g" "$before_all" "$after_all" \
		"$sh" "$shd" >> "$SUMMARY.raw"
	echo "   $mode: Pss $((before_all / 1024)) -> $((after_all / 1024)) MiB, pages_sharing $sh, converged at $conv s, $status" >&2
}

# "VMAS DC DD": how many VMAs lie in guest RAM (START-END, hex) of @pid,
# and how many of them are DONTFORK / DONTDUMP.
ram_flags_after() {
	python3 - "$1" "$2" <<'PY'
import re, sys
lo, hi = (int(x, 16) for x in sys.argv[2].split("-"))
n = dc = dd = 0
inr = False
for line in open("/proc/%s/smaps" % sys.argv[1]):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
    if m:
        inr = int(m.group(1), 16) >= lo and int(m.group(2), 16) <= hi
    elif line.startswith("VmFlags:") and inr:
        f = line.split()[1:]
        n += 1
        dc += "dc" in f
        dd += "dd" in f
print(n, dc, dd)
PY
}

cleanup_guests() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	if [ -n "$DAEMON_PID" ]; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		DAEMON_PID=""
	fi
	unset SAMEPAGE_SOCKET
}

# ---- main ------------------------------------------------------------------------
exec 9> /run/lock/samepage-ksm-knobs.lock
if ! flock -n 9; then
	echo "guests.sh: waiting for another driver of KSM's knobs (/run/lock/samepage-ksm-knobs.lock)" >&2
	flock 9
fi
KSM_SAVED="$(cat $KSM/pages_to_scan) $(cat $KSM/sleep_millisecs)"
KSM_RUN0=$(cat $KSM/run)
others=$(other_ksm_users)
rm -f "$SUMMARY" "$SUMMARY.rows" "$SUMMARY.raw"
{
	echo "# QEMU guests under kernel KSM and samepage ($(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs)"
	echo "# qemu: $(qemu-system-x86_64 --version | head -1); guest kernel: $(cat "$IMG/vmlinuz.pkg" 2>/dev/null || echo "$IMG/vmlinuz")"
	echo "# guests: -machine pc,mem-merge=on -accel tcg -m $GUEST_MIB -smp 1; init fills $FILL_MIB MiB (page-distinct, same in every guest), checks every $CHECK_S s"
	echo "# mergers at pages_to_scan $PTS, sleep_millisecs $SLEEP_MS (kernel defaults: pages_to_scan $(echo "$KSM_SAVED" | cut -d' ' -f1), sleep_millisecs $(echo "$KSM_SAVED" | cut -d' ' -f2), run $KSM_RUN0)"
	[ -n "$others" ] && echo "# note: other processes used kernel KSM at start:$others (the ksm mode waits for them)"
	echo "# converged: the guests' merging_pages grew by no more than 1% for $STABLE_S s, after at least 3 full scans; converge_s: when it last grew (sampled every $POLL_S s); cpu_to_conv: CPU seconds of the merger (ksmd; samepage agents + samepaged) until then"
	echo "# ideal: pages_sharing if every present guest RAM page with an identical partner merged (dupcount.py at ready)"
	echo "# zeropage: guest RAM pages on the kernel's shared zero page after merging (the kernel puts zero-filled"
	echo "#   subpages there when it splits a THP; neither KSM nor samepage counts them in pages_sharing)"
	echo "# daemon: Pss of our samepaged in MiB (included in Pss_after); cpu_steady: merger CPU-s per s after converging"
	echo "# profit: general_profit in MiB (saving minus the merger's metadata: KSM's rmap_items x 64 B are kernel slab,"
	echo "#   not in Pss; samepage's meta_bytes are in the processes' and samepaged's Pss)"
	echo "# Pss: sum over the qemu processes (+ our samepaged for samepage modes), MiB; merging: sum of the guests' per-process merging_pages"
} > "$SUMMARY"
for mode in $MODES; do
	if ! run_mode "$mode"; then
		echo "$mode: FAILED (see $OUT/$mode)" >> "$SUMMARY.rows"
		cleanup_guests
	fi
done
{
	printf '%-14s %6s %8s %8s %10s %10s %10s %8s %7s %13s %12s %7s %9s %7s %10s %11s %10s %8s %s\n' \
		mode guests ram_MiB fill_MiB Pss_before Pss_after saved_MiB daemon profit pages_sharing pages_shared ideal zeropage merging converge_s cpu_to_conv cpu_steady vmas_max "guest checks"
	cat "$SUMMARY.rows"
	echo
	awk -F'\t' '
		{ saved[$1] = ($4 - $5) / 1024; sh[$1] = $6 }
		END {
			if ("ksm" in saved && saved["ksm"] > 0)
				for (m in saved) if (m != "ksm")
					printf "ratio %s/ksm: Pss saved %.2f, pages_sharing %.2f\n", m,
					       saved[m] / saved["ksm"], sh["ksm"] ? sh[m] / sh["ksm"] : 0
		}' "$SUMMARY.raw"
	if grep -qs ' dc ' "$OUT/samepage/ram-vmflags.txt" &&
	   [ -s "$OUT/samepage/ram-vmflags-after.txt" ]; then
		read -r n dc dd < "$OUT/samepage/ram-vmflags-after.txt"
		echo "samepage: QEMU marks guest RAM MADV_DONTFORK (VmFlags: $(sed 's/.*VmFlags //' "$OUT/samepage/ram-vmflags.txt"))"
		echo "  after merging, guest 0's RAM is $n VMAs, $dc of them DONTFORK ('dc'), $dd DONTDUMP ('dd')"
	fi
} >> "$SUMMARY"
rm -f "$SUMMARY.rows" "$SUMMARY.raw"
cat "$SUMMARY"
