/*
 * test_no_ksm_calls.c - under `samepage run`, a program that never uses
 * the KSM API runs exactly as without it: no agent, no extra thread, no
 * userfaultfd, and its mmap / munmap / mremap / mprotect / madvise /
 * prctl / fork behave as the kernel's (errno included).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define PS 4096

static int count_dir(const char *path, const char *link_has)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char p[512], l[256];
		ssize_t r;

		if (de->d_name[0] == '.')
			continue;
		if (!link_has) {
			n++;
			continue;
		}
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		r = readlink(p, l, sizeof(l) - 1);
		if (r > 0) {
			l[r] = 0;
			n += strstr(l, link_has) != NULL;
		}
	}
	closedir(d);
	return n;
}

static void test_memory_calls_as_the_kernel(void **state)
{
	char *x, *y;
	pid_t pid;
	int st;

	(void)state;
	x = mmap(NULL, 16 * PS, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(x != MAP_FAILED);
	memset(x, 7, 16 * PS);
	assert_int_equal(mprotect(x, PS, PROT_READ), 0);
	assert_int_equal(mprotect(x, PS, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(madvise(x, 4 * PS, MADV_DONTNEED), 0);
	assert_int_equal(x[0], 0);
	assert_int_equal(x[4 * PS], 7);
	errno = 0;
	assert_int_equal(madvise(x + 1, PS, MADV_DONTNEED), -1);
	assert_int_equal(errno, EINVAL);
	y = mremap(x, 16 * PS, 32 * PS, MREMAP_MAYMOVE);
	assert_true(y != MAP_FAILED);
	assert_int_equal(y[8 * PS], 7);
	assert_int_equal(munmap(y, 32 * PS), 0);
	errno = 0;
	assert_int_equal(munmap((char *)y + 1, PS), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(prctl(PR_SET_NAME, "plain", 0, 0, 0), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = 0; i < 1000; i++)
		free(malloc(1 << 20));
	/* Nothing of samepage came to life. */
	assert_int_equal(count_dir("/proc/self/task", NULL), 1);
	assert_int_equal(count_dir("/proc/self/fd", "userfaultfd"), 0);
	assert_int_equal(count_dir("/proc/self/fd", "memfd"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_calls_as_the_kernel),
	};

	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "samepage")) {
		fprintf(stderr, "test_no_ksm_calls: SKIP: run me under "
			"samepage run\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
