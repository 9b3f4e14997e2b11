/*
 * cli.h - private to the command-line tool: its subcommands and the
 * helpers they share (report.c).
 */
#ifndef SP_CLI_H
#define SP_CLI_H

#include "samepage.h"

/* Subcommands: argv[0] is the subcommand's name; return the exit code. */
int cmd_demo(int argc, char **argv);		/* demo.c */
int cmd_demo_sim(int argc, char **argv);	/* demo_sim.c */
int cmd_run(int argc, char **argv);		/* run.c */
int cmd_stat(int argc, char **argv);		/* ctl.c */
int cmd_set(int argc, char **argv);		/* ctl.c */
/* ensure_daemon - a per-user samepaged answers at the socket written to
 * @path (started if none did).  Return: 0 or -errno. */
int ensure_daemon(char *path, size_t len);

/* report.c */
double now_s(void);				/* CLOCK_MONOTONIC, seconds */
double cpu_s(void);				/* this process's CPU time */
void print_stats(const struct sp_stats *st);
/* A field of /proc/self/smaps_rollup in kB (-1 if unreadable). */
long rollup_kb(const char *key);
/* Lines of /proc/self/maps: the process's VMAs (-1 if unreadable). */
long count_vmas(void);

#endif
