/*
 * guest-fill.c - the workload inside each QEMU guest (run as /init's last
 * step by scripts/qemu/guests.sh; built static on the host).
 *
 *   guest-fill FILL_MIB INTERVAL_S
 *
 * Fills FILL_MIB MiB of anonymous memory with a deterministic pattern:
 * every 4 KiB page different from every other page of the guest (an
 * xorshift stream seeded by the page number), and the same bytes in
 * every guest.  So these pages can only merge ACROSS guests: inside one
 * guest nothing repeats.  Then it prints
 *     GUEST-READY fill_mib=N sum=HEX
 * on stdout (the serial console) and, every INTERVAL_S seconds, checks
 * every byte against the pattern, rewrites a small scratch area (64
 * pages: writes that land on pages the host may have merged) and checks
 * it back, and prints
 *     GUEST-CHECK round=R sum=HEX bad_pages=B scratch_bad=S OK|FAIL
 * sum must stay the value of GUEST-READY; OK means B and S are 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define SCRATCH_PAGES 64u

static void gen_page(uint64_t *w, uint64_t page)
{
	uint64_t x = (page + 1) * 0x9E3779B97F4A7C15ull;

	for (unsigned i = 0; i < WORDS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0x100000001B3ull;
	return h ^ (h >> 29);
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	unsigned interval = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10;
	uint64_t pages = (uint64_t)mib * 256u, sum0 = 0, want[WORDS];
	uint64_t *mem, *scratch;

	setvbuf(stdout, NULL, _IOLBF, 0);
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	scratch = mmap(NULL, SCRATCH_PAGES * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || scratch == MAP_FAILED) {
		printf("GUEST-FAIL mmap\n");
		return 1;
	}
	for (uint64_t p = 0; p < pages; p++) {
		gen_page(mem + p * WORDS, p);
		for (unsigned i = 0; i < WORDS; i++)
			sum0 = mix(sum0, mem[p * WORDS + i]);
	}
	printf("GUEST-READY fill_mib=%lu sum=%016llx\n", mib,
	       (unsigned long long)sum0);
	for (unsigned long round = 1;; round++) {
		uint64_t sum = 0, bad = 0, sbad = 0;

		sleep(interval);
		for (uint64_t p = 0; p < pages; p++) {
			const uint64_t *w = mem + p * WORDS;

			gen_page(want, p);
			if (memcmp(w, want, PAGE))
				bad++;
			for (unsigned i = 0; i < WORDS; i++)
				sum = mix(sum, w[i]);
		}
		/* Writes into memory the host may have merged: every guest
		 * at the same round writes the same bytes. */
		for (unsigned p = 0; p < SCRATCH_PAGES; p++)
			gen_page(scratch + p * WORDS, round * 1000003u + p);
		for (unsigned p = 0; p < SCRATCH_PAGES; p++) {
			gen_page(want, round * 1000003u + p);
			if (memcmp(scratch + p * WORDS, want, PAGE))
				sbad++;
		}
		printf("GUEST-CHECK round=%lu sum=%016llx bad_pages=%llu "
		       "scratch_bad=%llu %s\n", round, (unsigned long long)sum,
		       (unsigned long long)bad, (unsigned long long)sbad,
		       sum == sum0 && !bad && !sbad ? "OK" : "FAIL");
	}
}
