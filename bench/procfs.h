/*
 * procfs.h - what bench/ksm_compare reads of other processes and of the
 * machine in /proc: fields, line counts, CPU time per task.  Every
 * function returns -1 (or 0 for CPU time) when the file is unreadable,
 * e.g. because the process is gone.
 */
#ifndef SP_BENCH_PROCFS_H
#define SP_BENCH_PROCFS_H

#include <sys/types.h>

/* read_str - the contents of @path into @buf (@len bytes with the NUL),
 * trailing newlines and blanks cut.  Return: 0 or -1. */
int read_str(const char *path, char *buf, size_t len);

/* proc_field - the number after @key in /proc/@pid/@file, for lines
 * "Key: value" (smaps_rollup) or "key value" (ksm_stat).  Return: the
 * value, or -1. */
long long proc_field(pid_t pid, const char *file, const char *key);

/* count_lines - lines of /proc/@pid/@file (maps: the VMAs).  Return: the
 * count, or -1. */
long count_lines(pid_t pid, const char *file);

/* proc_cpu - CPU seconds of the tasks (threads) of @pid whose comm is
 * @comm, or of all of them if @comm is NULL; *@found (if not NULL) is
 * increased by the number of tasks that matched.  From schedstat's run
 * time (ns), else utime+stime. */
double proc_cpu(pid_t pid, const char *comm, int *found);

/* find_comm - the first process whose comm is @comm (a kernel thread
 * such as ksmd), or 0. */
pid_t find_comm(const char *comm);

/* machine_busy - busy CPU seconds of the whole machine since boot, all
 * CPUs together (/proc/stat: all but idle and iowait). */
double machine_busy(void);

#endif
