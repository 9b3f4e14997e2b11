/*
 * report.c - what the subcommands print: counters, clocks, and the
 * kernel's view of this process's memory (smaps_rollup, maps).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void print_stats(const struct sp_stats *st)
{
	printf("  pages_shared %llu  pages_sharing %llu  pages_unshared %llu  "
	       "pages_volatile %llu\n",
	       (unsigned long long)st->pages_shared,
	       (unsigned long long)st->pages_sharing,
	       (unsigned long long)st->pages_unshared,
	       (unsigned long long)st->pages_volatile);
	printf("  full_scans %llu  pages_scanned %llu  ksm_zero_pages %llu  "
	       "general_profit %lld\n",
	       (unsigned long long)st->full_scans,
	       (unsigned long long)st->pages_scanned,
	       (unsigned long long)st->ksm_zero_pages,
	       (long long)st->general_profit);
}

double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

long rollup_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = atol(line + n + 1);
	fclose(f);
	return v;
}

long count_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}
