/*
 * run.c - `samepage run [OPTIONS] -- CMD [ARGS...]`: run a program with
 * the KSM API served by samepage (LD_PRELOAD of libsamepage-preload.so,
 * found next to this binary or at $SAMEPAGE_PRELOAD).
 *
 * Options set the agent's knobs in every process of the program
 * (environment variables the shim reads when the program first uses the
 * KSM API):
 *   --pages-to-scan N  --sleep-millisecs N  --max-page-sharing N
 *   --use-zero-pages 0|1  --smart-scan 0|1  --run 0|1
 * Values are checked here, with the engine's own rules, before anything
 * runs: a bad name or value is an error and nothing is started.
 *
 * At start-up it checks that merging can run here (a usable
 * userfaultfd): if not, it says why and refuses (exit 1), unless
 * --no-merge-ok is given, in which case the program runs and its KSM
 * calls succeed without merging, as with KSM's run=0.
 *
 * Processes merge with each other through samepaged: the per-user one at
 * spp_socket_path() (started here if none answers; it exits after a
 * minute without clients), or the one $SAMEPAGE_SOCKET names (a system
 * daemon: /run/samepage/samepaged.sock).  --no-daemon keeps merging
 * inside each process.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define SHIM_NAME "libsamepage-preload.so"

static const struct {
	const char *opt, *env;
	enum sp_knob knob;	/* SP_KNOB_COUNT: --run */
} opts[] = {
	{ "--pages-to-scan", "SAMEPAGE_PAGES_TO_SCAN", SP_KNOB_PAGES_TO_SCAN },
	{ "--sleep-millisecs", "SAMEPAGE_SLEEP_MILLISECS",
	  SP_KNOB_SLEEP_MILLISECS },
	{ "--max-page-sharing", "SAMEPAGE_MAX_PAGE_SHARING",
	  SP_KNOB_MAX_PAGE_SHARING },
	{ "--use-zero-pages", "SAMEPAGE_USE_ZERO_PAGES", SP_KNOB_USE_ZERO_PAGES },
	{ "--smart-scan", "SAMEPAGE_SMART_SCAN", SP_KNOB_SMART_SCAN },
	{ "--run", "SAMEPAGE_RUN", SP_KNOB_COUNT },
};

/* Check @val for @knob with the engine's own rules (a scratch engine on
 * simulated memory).  Return: 0 or -EINVAL. */
static int knob_ok(enum sp_knob knob, const char *val)
{
	struct sp_sim *sim;
	struct sp_engine *e;
	unsigned long long x;
	char *end;
	int err;

	errno = 0;
	x = strtoull(val, &end, 10);
	if (!*val || *end || errno || val[0] == '-')
		return -EINVAL;
	if (knob == SP_KNOB_COUNT)
		return x <= 1 ? 0 : -EINVAL;
	if (sp_sim_new(&sim))
		return -ENOMEM;
	err = sp_engine_new(&(struct sp_engine_config){ .ops = &sp_sim_ops,
							.be = sim },
			    &e);
	if (!err) {
		err = sp_knob_set(e, knob, x);
		sp_engine_free(e);
	}
	sp_sim_free(sim);
	return err;
}

/* The shim: $SAMEPAGE_PRELOAD, else next to /proc/self/exe. */
static int find_shim(char *path, size_t len)
{
	const char *env = getenv("SAMEPAGE_PRELOAD");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(path, len, "%s", env);
		return access(path, R_OK) ? -errno : 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	if ((size_t)snprintf(path, len, "%s/%s", exe, SHIM_NAME) >= len)
		return -ENAMETOOLONG;
	return access(path, R_OK) ? -errno : 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: samepage run [--pages-to-scan N] "
		"[--sleep-millisecs N] [--max-page-sharing N]\n"
		"                    [--use-zero-pages 0|1] [--smart-scan 0|1] "
		"[--run 0|1] [--no-merge-ok]\n"
		"                    [--no-daemon]\n"
		"                    -- CMD [ARGS...]\n");
	return 2;
}

int cmd_run(int argc, char **argv)
{
	char shim[PATH_MAX], why[512], *pre;
	const char *old;
	int i, no_merge_ok = 0, no_daemon = 0, err;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		size_t k;

		if (!strcmp(argv[i], "--no-merge-ok")) {
			no_merge_ok = 1;
			continue;
		}
		if (!strcmp(argv[i], "--no-daemon")) {
			no_daemon = 1;
			continue;
		}
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (!strcmp(argv[i], opts[k].opt))
				break;
		if (k == sizeof(opts) / sizeof(opts[0])) {
			fprintf(stderr, "samepage run: unknown option '%s'\n",
				argv[i]);
			return usage();
		}
		if (i + 1 >= argc || knob_ok(opts[k].knob, argv[i + 1])) {
			fprintf(stderr, "samepage run: bad value for %s: '%s'\n",
				argv[i], i + 1 < argc ? argv[i + 1] : "");
			return 2;
		}
		setenv(opts[k].env, argv[i + 1], 1);
		i++;
	}
	if (i >= argc - 1)
		return usage();
	err = find_shim(shim, sizeof(shim));
	if (err) {
		fprintf(stderr, "samepage run: cannot find %s: %s\n", shim,
			strerror(-err));
		return 1;
	}
	err = sp_agent_check(why, sizeof(why));
	if (err && !no_merge_ok) {
		fprintf(stderr, "samepage run: cannot merge here: %s\n"
			"(--no-merge-ok runs the program anyway, merging "
			"nothing)\n", why);
		return 1;
	}
	if (!err && !no_daemon) {
		char sock[108];
		int e = ensure_daemon(sock, sizeof(sock));

		if (e)
			fprintf(stderr, "samepage run: no samepaged (%s): "
				"merging inside each process only\n",
				strerror(-e));
		else
			setenv("SAMEPAGE_SOCKET", sock, 1);
	}
	old = getenv("LD_PRELOAD");
#ifdef SP_PRELOAD_FIRST
	/* A sanitizer build: its runtime must be loaded first. */
	if (!old)
		old = "";
	pre = malloc(strlen(SP_PRELOAD_FIRST) + strlen(shim) + strlen(old) + 3);
	if (!pre)
		return 1;
	sprintf(pre, "%s:%s%s%s", SP_PRELOAD_FIRST, shim, *old ? ":" : "", old);
#else
	if (old && *old) {
		pre = malloc(strlen(shim) + strlen(old) + 2);
		if (!pre)
			return 1;
		sprintf(pre, "%s:%s", shim, old);
	} else {
		pre = shim;
	}
#endif
	setenv("LD_PRELOAD", pre, 1);
	execvp(argv[i + 1], argv + i + 1);
	fprintf(stderr, "samepage run: %s: %s\n", argv[i + 1], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
