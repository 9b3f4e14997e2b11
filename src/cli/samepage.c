/*
 * samepage.c - the command-line tool: a table of subcommands.
 *
 *   samepage version      print the version and the checksum variant in use
 *   samepage demo [MiB]   merge duplicate data in this process's real
 *                         memory and show the kernel's view before/after
 *   samepage demo --sim   the same idea on simulated memory
 *   samepage run -- CMD   run CMD with the KSM API served by samepage
 *   samepage stat / set   samepaged's counters and knobs (ctl.c)
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util/hash.h"

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("samepage %s (checksum: XXH3-64, %s)\n", SP_VERSION_STRING,
	       sp_hash_impl());
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "version", cmd_version, "print the version" },
	{ "demo", cmd_demo, "merge duplicate data in real memory, show Pss "
			    "before/after (--sim: simulated)" },
	{ "run", cmd_run, "run a program with its KSM calls (madvise, prctl) "
			  "served by samepage" },
	{ "stat", cmd_stat, "counters of the processes merging through "
			    "samepaged (--pid PID, --json)" },
	{ "set", cmd_set, "set a knob for every process of the domain" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: samepage COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "samepage: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
