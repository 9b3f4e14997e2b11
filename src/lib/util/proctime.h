/*
 * proctime.h - process start times, in the unit of /proc/PID/stat's
 * starttime: clock ticks (_SC_CLK_TCK) since boot, CLOCK_BOOTTIME.
 *
 * Both stores (the per-process one in mem/lx_store.c and samepaged's)
 * free a page only when no process can reach it; a process whose maps
 * cannot be read may still be ruled out if it started before the store
 * existed, so it cannot have inherited a mapping.  These two calls give
 * both sides of that comparison.  Pure reads; any thread.
 */
#ifndef SP_UTIL_PROCTIME_H
#define SP_UTIL_PROCTIME_H

#include <stdint.h>
#include <sys/types.h>

/* sp_boot_ticks - now, rounded down: a process that started in this very
 * tick counts as started after. */
uint64_t sp_boot_ticks(void);

/*
 * sp_proc_start - process @pid's starttime into *@ticks.
 * Return: 0; -ENOENT or -ESRCH if it is gone; another -errno if its stat
 * file cannot be opened; -EIO if it cannot be read or parsed.
 */
int sp_proc_start(pid_t pid, uint64_t *ticks);

#endif
