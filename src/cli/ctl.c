/*
 * ctl.c - talking to samepaged from the command line:
 *
 *   samepage stat [--pid PID] [--json]   the domain's counters with the
 *                                        kernel's names (as in
 *                                        /sys/kernel/mm/ksm), or one
 *                                        process's (as /proc/PID/ksm_stat)
 *   samepage set NAME VALUE              a knob for every process of the
 *                                        domain (run, pages_to_scan, ...,
 *                                        the advisor's)
 *
 * and ensure_daemon(), which `samepage run` uses to start a per-user
 * daemon when none answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "proto.h"

static int daemon_sock(char *path, size_t len)
{
	int s;

	if (spp_socket_path(path, len))
		return -ENAMETOOLONG;
	s = spp_connect(path, 3000);
	if (s < 0)
		fprintf(stderr, "samepage: no samepaged at %s: %s\n", path,
			strerror(-s));
	return s;
}

/* samepaged next to this binary. */
static int daemon_exe(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n < 0)
		return -errno;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	if ((size_t)snprintf(buf, len, "%s/samepaged", exe) >= len)
		return -ENAMETOOLONG;
	return access(buf, X_OK) ? -errno : 0;
}

int ensure_daemon(char *path, size_t len)
{
	char exe[PATH_MAX];
	pid_t pid;
	int s, err;

	if (spp_socket_path(path, len))
		return -ENAMETOOLONG;
	s = spp_connect(path, 1000);
	if (s >= 0) {
		close(s);
		return 0;
	}
	err = daemon_exe(exe, sizeof(exe));
	if (err)
		return err;
	/* Detached: its own session, no terminal, gone after a minute
	 * without clients. */
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int fd = open("/dev/null", O_RDWR);

		setsid();
		if (fork())
			_exit(0);
		/* No fd of the caller's either: a harness waiting for our
		 * caller's output to end must not wait for us. */
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		closefrom(3);
		unsetenv("LD_PRELOAD");
		execl(exe, "samepaged", "--idle-exit", "60", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 200; i++) {	/* up to 2 s for it to listen */
		struct timespec ts = { 0, 10000000 };

		s = spp_connect(path, 1000);
		if (s >= 0) {
			close(s);
			return 0;
		}
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

int cmd_stat(int argc, char **argv)
{
	uint8_t buf[SPP_MAX_MSG];
	struct spp_stat_r r;
	char path[108];
	uint32_t pid = 0;
	int json = 0, s, first = 1;
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--pid") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);

			if (*end || !v || v > INT32_MAX) {
				fprintf(stderr, "samepage stat: bad pid '%s'\n",
					argv[i]);
				return 2;
			}
			pid = (uint32_t)v;
		} else {
			fprintf(stderr, "usage: samepage stat [--pid PID] "
					"[--json]\n");
			return 2;
		}
	}
	s = daemon_sock(path, sizeof(path));
	if (s < 0)
		return 1;
	n = spp_call(s, SPP_STAT, 1, &pid, sizeof(pid), SPP_STAT_R, buf, NULL);
	close(s);
	if (n < 0) {
		fprintf(stderr, "samepage stat: %s\n",
			n == -ESRCH ? "no such process in this domain "
				      "(not run under samepage run?)"
				    : strerror((int)-n));
		return 1;
	}
	memcpy(&r, buf + sizeof(struct spp_hdr), sizeof(r));
	if (json)
		printf("{");
#define OUT(name, val)                                                       \
	do {                                                                 \
		if (json)                                                    \
			printf("%s\"%s\": %lld", first ? "" : ", ", (name),  \
			       (long long)(val));                            \
		else                                                         \
			printf("%s %lld\n", (name), (long long)(val));       \
		first = 0;                                                   \
	} while (0)
	if (pid) {
		/* /proc/PID/ksm_stat's names, in its order */
		OUT("ksm_rmap_items", r.rep.v[SPS_KSM_RMAP_ITEMS]);
		OUT("ksm_zero_pages", r.rep.v[SPS_KSM_ZERO_PAGES]);
		OUT("ksm_merging_pages", r.rep.v[SPS_KSM_MERGING_PAGES]);
		OUT("ksm_process_profit", r.rep.v[SPS_KSM_PROCESS_PROFIT]);
		OUT("ksm_merge_any", r.rep.v[SPS_KSM_MERGE_ANY]);
		OUT("ksm_mergeable", r.rep.v[SPS_KSM_RMAP_ITEMS] > 0);
		/* samepage's own: each process scans its own memory, at
		 * the rate the knob or the advisor gives it; with the
		 * knob, its share of it in a domain of several (what it
		 * scans per sleep_millisecs) */
		OUT("pages_to_scan", r.rep.v[SPS_PAGES_TO_SCAN]);
		OUT("scan_share", r.rep.v[SPS_SCAN_SHARE]);
		OUT("full_scans", r.rep.v[SPS_FULL_SCANS]);
		OUT("shared_store_pages", r.rep.v[SPS_SHARED_GLOBAL]);
		/* of ksm_merging_pages, zero-filled pages on the zero page */
		OUT("zero_merged", r.rep.v[SPS_ZERO_MERGED]);
		OUT("cpu_ns", r.rep.v[SPS_CPU_NS]);
		OUT("meta_bytes", r.rep.v[SPS_META_BYTES]);
	} else {
		/* /sys/kernel/mm/ksm's counters, then its knobs */
		for (int k = SPS_PAGES_SHARED; k <= SPS_STABLE_NODE_DUPS; k++)
			OUT(spp_stat_name[k], r.rep.v[k]);
		for (int k = 0; k < SPK_COUNT; k++)
			OUT(spp_knob_name[k], r.knobs.v[k]);
		/* samepage's own */
		OUT("shared_store_pages", r.rep.v[SPS_SHARED_GLOBAL]);
		OUT("processes", r.rep.pid);
		/* of pages_shared + pages_sharing, zero-filled pages merged
		 * with use_zero_pages 0 and released to the zero page */
		OUT("zero_merged", r.rep.v[SPS_ZERO_MERGED]);
		OUT("meta_bytes", r.rep.v[SPS_META_BYTES]);
		OUT("cpu_ns", r.rep.v[SPS_CPU_NS]);
		OUT("daemon_cpu_ns", r.rep.v[SPS_DAEMON_CPU_NS]);
	}
#undef OUT
	if (json)
		printf("}\n");
	return 0;
}

int cmd_set(int argc, char **argv)
{
	uint8_t buf[SPP_MAX_MSG];
	struct spp_set st = { 0 };
	char path[108], *end;
	int k, s;
	ssize_t n;

	if (argc != 3) {
		fprintf(stderr, "usage: samepage set NAME VALUE\nnames:");
		for (k = 0; k < SPK_COUNT; k++)
			fprintf(stderr, " %s", spp_knob_name[k]);
		fprintf(stderr, "\n");
		return 2;
	}
	k = spp_knob_lookup(argv[1]);
	if (k < 0) {
		fprintf(stderr, "samepage set: unknown knob '%s'\n", argv[1]);
		return 2;
	}
	st.knob = (uint32_t)k;
	if (k == SPK_ADVISOR_MODE && !strcmp(argv[2], "scan-time"))
		st.value = 1;
	else if (k == SPK_ADVISOR_MODE && !strcmp(argv[2], "none"))
		st.value = 0;
	else {
		errno = 0;
		st.value = strtoull(argv[2], &end, 10);
		if (errno || end == argv[2] || *end || argv[2][0] == '-') {
			fprintf(stderr, "samepage set: bad value '%s' for %s\n",
				argv[2], argv[1]);
			return 2;
		}
	}
	if (spp_knob_check(st.knob, st.value)) {
		fprintf(stderr, "samepage set: %s out of range for %s\n",
			argv[2], argv[1]);
		return 2;
	}
	s = daemon_sock(path, sizeof(path));
	if (s < 0)
		return 1;
	n = spp_call(s, SPP_SET, 1, &st, sizeof(st), SPP_ERR, buf, NULL);
	close(s);
	if (n < 0) {
		fprintf(stderr, "samepage set %s: %s\n", argv[1],
			n == -EBUSY ? "busy: stable pages exist (unmerge "
				      "first: samepage set run 2)"
				    : strerror((int)-n));
		return 1;
	}
	return 0;
}
