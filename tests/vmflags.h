/*
 * vmflags.h - what /proc/self/smaps says of the VMAs over a range
 * (tests only): their flags (merging must keep DONTFORK and DONTDUMP)
 * and their sizes (Rss of the pages a test merged, without the merger's
 * own memory).
 */
#ifndef SP_TEST_VMFLAGS_H
#define SP_TEST_VMFLAGS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether @line opens a VMA's block ("lo-hi perms ..."): *lo, *hi set. */
static inline int smaps_header(const char *line, unsigned long *lo,
			       unsigned long *hi)
{
	return sscanf(line, "%lx-%lx ", lo, hi) == 2 &&
	       strchr(line, '-') < strchr(line, ' ');
}

/* Whether every VMA over [p, p+len) has the two-letter VmFlags @flag
 * (@want 1), or none has it (@want 0). */
static inline int vmas_flag(const void *p, size_t len, const char *flag,
			    int want)
{
	char line[512];
	unsigned long s = 0, e = 0, a = (uintptr_t)p, b = a + len;
	int ok = 1, seen = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long x, y;
		char pat[8];

		if (smaps_header(line, &x, &y)) {
			s = x;
			e = y;
			continue;
		}
		if (strncmp(line, "VmFlags:", 8) || e <= a || s >= b)
			continue;
		snprintf(pat, sizeof(pat), " %s ", flag);
		line[strcspn(line, "\n")] = ' ';
		seen = 1;
		if (!!strstr(line + 7, pat) != want)
			ok = 0;
	}
	fclose(f);
	return ok && seen;
}

/* How many VMAs lie over [p, p+len) (0 if smaps cannot be read). */
static inline unsigned vmas_over(const void *p, size_t len)
{
	char line[512];
	unsigned long a = (uintptr_t)p, b = a + len;
	unsigned n = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long x, y;

		if (smaps_header(line, &x, &y) && y > a && x < b)
			n++;
	}
	fclose(f);
	return n;
}

/* @key of the VMA holding @addr (kB), or -1. */
static inline long vma_kb(const void *addr, const char *key)
{
	char line[256];
	long v = -1;
	int in = 0;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (smaps_header(line, &lo, &hi)) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, key, n) && line[n] == ':')
			v = atol(line + n + 1);
	}
	fclose(f);
	return v;
}

#endif
