/*
 * procfs.c - what bench/ksm_compare reads in /proc (procfs.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

int read_str(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

/* A field of /proc/PID/<file> ("Key: value" or "key value"), or -1. */
long long proc_field(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t n = strlen(key);
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) &&
		    (line[n] == ':' || line[n] == ' ')) {
			v = atoll(line + n + 1);
			break;
		}
	fclose(f);
	return v;
}

long count_lines(pid_t pid, const char *file)
{
	char path[64], buf[65536];
	long lines = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(fd);
	return lines;
}

/* CPU time of one task (a /proc/PID/task/TID directory), in seconds:
 * schedstat's run time, else utime+stime. */
static double task_cpu(const char *dir)
{
	char path[400], buf[1024], *p;
	unsigned long long ut, st;

	snprintf(path, sizeof(path), "%s/schedstat", dir);
	if (!read_str(path, buf, sizeof(buf)) && buf[0])
		return strtoull(buf, NULL, 10) / 1e9;
	snprintf(path, sizeof(path), "%s/stat", dir);
	if (read_str(path, buf, sizeof(buf)) || !(p = strrchr(buf, ')')))
		return 0;
	/* after ")": state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of the tasks of @pid whose comm is @comm (all if NULL);
 * *@found (if not NULL) counts the tasks that matched. */
double proc_cpu(pid_t pid, const char *comm, int *found)
{
	char dir[64], tdir[330], name[64];
	struct dirent *de;
	double sum = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(tdir, sizeof(tdir), "%s/%s", dir, de->d_name);
		if (comm) {
			char p[340];

			snprintf(p, sizeof(p), "%s/comm", tdir);
			if (read_str(p, name, sizeof(name)) || strcmp(name, comm))
				continue;
		}
		if (found)
			(*found)++;
		sum += task_cpu(tdir);
	}
	closedir(d);
	return sum;
}

pid_t find_comm(const char *comm)
{
	char p[300], name[64];
	struct dirent *de;
	pid_t pid = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return 0;
	while (!pid && (de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/comm", de->d_name);
		if (!read_str(p, name, sizeof(name)) && !strcmp(name, comm))
			pid = (pid_t)atoi(de->d_name);
	}
	closedir(d);
	return pid;
}

/* Busy CPU seconds of the whole machine (/proc/stat). */
double machine_busy(void)
{
	unsigned long long v[8] = { 0 };
	char buf[512];

	if (read_str("/proc/stat", buf, sizeof(buf)) ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 5)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
	       (double)sysconf(_SC_CLK_TCK);
}
