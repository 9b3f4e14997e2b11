#!/bin/bash
# stale-nomination.sh - reproduce: a process ALONE in a samepaged domain
# gets its unique pages "merged" into the shared store (pages_shared up,
# pages_sharing 0) because an earlier, exited process nominated the same
# hashes.  Found while restarting QEMU guests under `samepage run` (a guest
# that restarts finds its previous incarnation's nominations).
#
#   scripts/qemu/stale-nomination.sh      (root, or a usable userfaultfd)
#
# Run 1: a program with 8192 distinct pages (32 MiB) registers them and
# lets samepage scan for 3 s: nothing merges (correct).  Run 2: the same
# program again, alone, with the same daemon: expected the same.  Before
# samepaged dropped a leaving client's nominations (store_forget_client),
# ~all its pages were mapped to shared-store pages with one sharer; now
# both runs show 0.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SP=$here/../../build/samepage
tmp=$(mktemp -d /tmp/stale-nom.XXXXXX)
chmod 700 "$tmp"
trap 'rm -rf "$tmp"' EXIT
export SAMEPAGE_SOCKET=$tmp/d.sock

cat > "$tmp/distinct.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	size_t n = 8192;
	uint64_t *m = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	for (size_t i = 0; i < n * 512; i++)
		m[i] = i * 0x9E3779B97F4A7C15ull + 1;	/* every page distinct */
	if (madvise(m, n * 4096, MADV_MERGEABLE))
		return 1;
	printf("ready %d\n", getpid());
	fflush(stdout);
	sleep(argc > 1 ? atoi(argv[1]) : 4);
	for (size_t i = 0; i < n * 512; i++)
		if (m[i] != i * 0x9E3779B97F4A7C15ull + 1)
			return printf("BAD page %zu\n", i / 512), 1;
	return 0;
}
EOF
gcc -O2 -o "$tmp/distinct" "$tmp/distinct.c"

for run in 1 2; do
	"$SP" run --pages-to-scan 10000 --sleep-millisecs 0 -- "$tmp/distinct" 4 > "$tmp/out" &
	pid=$!
	sleep 3
	echo "run $run (alone in the domain; pid $pid):" \
	     "$("$SP" stat | awk '$1 ~ /^(pages_shared|pages_sharing|shared_store_pages|processes)$/ { printf "%s=%s ", $1, $2 }')" \
	     "store mappings: $(grep -c 'samepage-shared-store' /proc/$pid/maps || true)"
	wait $pid || echo "run $run: program failed"
done
