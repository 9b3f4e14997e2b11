/*
 * vmflags.h - what /proc/self/smaps says of the VMA flags over a range
 * (tests only: merging must keep DONTFORK and DONTDUMP).
 */
#ifndef SP_TEST_VMFLAGS_H
#define SP_TEST_VMFLAGS_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

		if (sscanf(line, "%lx-%lx ", &x, &y) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
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

#endif
