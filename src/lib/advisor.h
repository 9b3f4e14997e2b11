/*
 * advisor.h - how fast a process's agent scans: the scan-time advisor's
 * rule (advisor_mode scan-time, as KSM's since 6.8: from how long the
 * last pass took, and how much CPU it used, the pages_to_scan that makes
 * the next pass take the target time without going over the CPU cap),
 * and a process's share of its domain's pages_to_scan.
 *
 * Pure arithmetic, no state: the agent keeps the pass's start and the
 * domain's figures, and calls these (agent.c advise(), scan_budget()).
 */
#ifndef SP_ADVISOR_H
#define SP_ADVISOR_H

#include <stdint.h>

/*
 * A process's agent begins a pass at most every SP_MIN_PASS_MS
 * milliseconds, however fast it scans (agent.c pass_gap()): content
 * rewritten faster than that never shows the same checksum twice, so it
 * never merges.  It also bounds the rescan rate: N registered pages are
 * covered at most N * 1000 / SP_MIN_PASS_MS times a second (bench/
 * ksm_compare reports that cap beside the measured rate).
 */
#define SP_MIN_PASS_MS 100

struct sp_advice {
	uint64_t pages_to_scan;	/* in force during the last pass, > 0 */
	double wall_s;		/* the last pass: elapsed time */
	double cpu_s;		/*   and the scanner's CPU time in it */
	uint64_t target_s;	/* advisor_target_scan_time, > 0 */
	uint64_t max_cpu;	/* advisor_max_cpu, percent of one CPU */
	uint64_t min_pages, max_pages;	/* advisor_min/max_pages_to_scan */
};

/*
 * sp_advise_pages - pages_to_scan for the next pass.  The pass time is
 * taken as proportional to 1 / pages_to_scan (the sleeps between batches
 * dominate a slow pass), the CPU share as proportional to pages_to_scan;
 * the answer is the one meeting the target, lowered to the CPU cap,
 * then held within [min_pages, max_pages].  A pass with no measurable
 * time keeps pages_to_scan (within the bounds).
 */
uint64_t sp_advise_pages(const struct sp_advice *in);

/*
 * sp_scan_share - the pages one process scans per sleep_millisecs when
 * the processes of its domain have @domain pages to scan, @mine of them
 * its own: its part of @pages_to_scan, rounded up, at least 1.  Kernel
 * KSM's one ksmd scans pages_to_scan pages per sleep across every
 * process; with each agent taking its part, the domain's agents scan
 * about as many together (at most one page more each), and each
 * process's pass takes as long as ksmd's pass over all of them.  With
 * @mine 0, or @domain not above @mine (the process is alone, or the
 * figures are not in yet): all of @pages_to_scan.
 */
uint64_t sp_scan_share(uint64_t pages_to_scan, uint64_t mine,
		       uint64_t domain);

#endif
