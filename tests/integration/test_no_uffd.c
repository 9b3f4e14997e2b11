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
 *
 * And the way out: a process whose group may open /dev/userfaultfd (what
 * systemd/60-samepage-userfaultfd.rules gives the group "samepage")
 * merges without root.
 */
#include <dirent.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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

/* Whether vm.unprivileged_userfaultfd lets every process have one. */
static int unprivileged_uffd(void)
{
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re");
	int unpriv = 0;

	if (f) {
		if (fscanf(f, "%d", &unpriv) != 1)
			unpriv = 0;
		fclose(f);
	}
	return unpriv;
}

static void test_refuses_without_userfaultfd(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	if (unprivileged_uffd()) {
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
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(2);
		_exit(check_refusal());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define GRANTED_GID 4242	/* any gid: it need not be in /etc/group */
#define NPAIR 64		/* pages, and as many copies of them */

/* In a process of nobody's in group GRANTED_GID only: start an agent,
 * merge NPAIR pages with their copies.  Return: 0 if every page ended on
 * the store (pagemap's file bit: PFNs are hidden from nobody) with its
 * bytes, 77 if the kernel's userfaultfd cannot hold pages (no
 * UFFDIO_MOVE before Linux 6.8, as rt_start_or_skip), else 1. */
static int merge_as_member(void)
{
	struct sp_agent_config cfg = { .run = 0 };
	struct sp_agent *a = NULL;
	struct sp_stats st;
	char why[512] = "";
	uint64_t e;
	char *p;
	int err = sp_agent_start(&cfg, &a, why, sizeof(why));
	int pm, bad = 0;

	if (err) {
		fprintf(stderr, "as a member of the group: sp_agent_start: %s "
			"(%s)\n", strerror(-err), why);
		return err == -ENOSYS ? 77 : 1;
	}
	p = mmap(NULL, 2 * NPAIR * PS, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	rt_fill(p, NPAIR, 7);
	rt_fill(p + NPAIR * PS, NPAIR, 7);
	err = sp_agent_register(a, p, 2 * NPAIR * PS);
	if (!err)
		err = sp_agent_merge_now(a, 20000);	/* meson's: 60 s */
	if (err) {
		fprintf(stderr, "as a member of the group: register or merge: "
			"%s\n", strerror(-err));
		return 1;
	}
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (size_t i = 0; i < 2 * NPAIR; i++) {
		(void)*(volatile const char *)(p + i * PS);	/* map it */
		if (pm < 0 || pread(pm, &e, 8,
				    (off_t)((uintptr_t)p / PS + i) * 8) != 8 ||
		    !(e >> 61 & 1))
			bad++;
	}
	sp_stats_get(sp_agent_engine(a), &st);
	fprintf(stderr, "as uid %d in group %d only: %llu pages sharing, "
		"%d of %d pages not on the store\n", (int)getuid(),
		GRANTED_GID, (unsigned long long)st.pages_sharing, bad,
		2 * NPAIR);
	if (bad || st.pages_sharing != NPAIR || !rt_is(p, NPAIR, 7) ||
	    !rt_is(p + NPAIR * PS, NPAIR, 7))
		return 1;
	sp_agent_stop(a);
	return 0;
}

/* In a child, as root: give /dev/userfaultfd to GRANTED_GID in a mount
 * namespace of our own (a node of the same device on a fresh tmpfs,
 * bound over it; the host's node is untouched), become nobody in that
 * group alone, and merge.  Exit 77 where a step the set-up needs is
 * refused (no mount namespaces, no mknod in this container). */
static void grant_and_merge(const char *dir)
{
	char node[256];
	struct stat sb;
	gid_t g = GRANTED_GID;

	snprintf(node, sizeof(node), "%s/userfaultfd", dir);
	if (stat("/dev/userfaultfd", &sb) || !S_ISCHR(sb.st_mode) ||
	    unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", dir, "tmpfs", 0, "mode=0755") ||
	    mknod(node, S_IFCHR | 0600, sb.st_rdev) ||
	    chown(node, 0, g) || chmod(node, 0660) ||
	    mount(node, "/dev/userfaultfd", NULL, MS_BIND, NULL)) {
		fprintf(stderr, "cannot set the device up here: %s\n",
			strerror(errno));
		_exit(77);
	}
	/* Changing uid made us undumpable, and /proc/self root's: a
	 * process nobody started is dumpable. */
	if (setgroups(1, &g) || setgid(65534) || setuid(65534) ||
	    prctl(PR_SET_DUMPABLE, 1))
		_exit(2);
	_exit(merge_as_member());
}

static void test_group_member_merges(void **state)
{
	char dir[] = "/tmp/sp-uffd-XXXXXX";
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "needs root to give a group the device\n");
		skip();
	}
	if (unprivileged_uffd()) {
		fprintf(stderr, "vm.unprivileged_userfaultfd=1: nobody would "
			"not need the device\n");
		skip();
	}
	assert_non_null(mkdtemp(dir));
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		grant_and_merge(dir);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(dir);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refuses_without_userfaultfd),
		cmocka_unit_test(test_group_member_merges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
