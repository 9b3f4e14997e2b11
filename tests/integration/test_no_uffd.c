/*
 * test_no_uffd.c - where no usable userfaultfd exists, merging refuses
 * to start, says why, and leaves the process as it was.
 *
 * Holding a page with no write lost (kernel writes and DMA included)
 * needs a userfaultfd that blocks kernel-mode faults; user-mode-only ones
 * make read(2) into a held page fail with EFAULT.  So an unprivileged
 * process on a host with vm.unprivileged_userfaultfd=0 and no access to
 * /dev/userfaultfd gets -EPERM from sp_agent_start() and a reason, and no
 * thread, mapping or file of the agent stays behind.
 *
 * Run as root, the test drops to nobody in a child; run unprivileged, it
 * checks this process.  Skips where unprivileged userfaultfd is allowed.
 */
#include <dirent.h>
#include <sys/wait.h>

#include "rt.h"

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	int n = 0, c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* In an unprivileged process: 0 if the refusal is as it should be. */
static int check_refusal(void)
{
	struct sp_agent_config cfg = { .run = 1 };
	struct sp_agent *a = NULL;
	char why[512] = "";
	int threads = count_dir("/proc/self/task");
	int fds = count_dir("/proc/self/fd");
	int maps = count_lines("/proc/self/maps");
	int err = sp_agent_start(&cfg, &a, why, sizeof(why));

	if (err != -EPERM) {
		fprintf(stderr, "sp_agent_start: %d (%s), want -EPERM\n", err,
			why);
		return 1;
	}
	if (a || !strstr(why, "userfaultfd")) {
		fprintf(stderr, "no reason given (\"%s\")\n", why);
		return 1;
	}
	if (count_dir("/proc/self/task") != threads ||
	    count_dir("/proc/self/fd") != fds ||
	    count_lines("/proc/self/maps") != maps) {
		fprintf(stderr, "something stayed behind: threads %d->%d, "
			"fds %d->%d, maps %d->%d\n", threads,
			count_dir("/proc/self/task"), fds,
			count_dir("/proc/self/fd"), maps,
			count_lines("/proc/self/maps"));
		return 1;
	}
	/* A second attempt says the same (no half-started agent). */
	if (sp_agent_start(&cfg, &a, why, sizeof(why)) != -EPERM)
		return 1;
	printf("refused, as it should be: %s\n", why);
	return 0;
}

static void test_refuses_without_userfaultfd(void **state)
{
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re");
	int unpriv = 0, status;
	pid_t pid;

	(void)state;
	if (f) {
		if (fscanf(f, "%d", &unpriv) != 1)
			unpriv = 0;
		fclose(f);
	}
	if (unpriv) {
		fprintf(stderr, "vm.unprivileged_userfaultfd=1: every process "
			"may merge here\n");
		skip();
	}
	if (geteuid() != 0) {
		if (access("/dev/userfaultfd", R_OK | W_OK) == 0)
			skip();	/* granted /dev/userfaultfd: it may merge */
		assert_int_equal(check_refusal(), 0);
		return;
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(check_refusal());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refuses_without_userfaultfd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
