/*
 * advisor.h - the scan-time advisor's rule (advisor_mode scan-time, as
 * KSM's since 6.8): from how long the last pass took, and how much CPU
 * it used, the pages_to_scan that makes the next pass take the target
 * time without going over the CPU cap.
 *
 * Pure arithmetic, no state: the agent keeps the pass's start and calls
 * this once per pass (agent.c advise()).
 */
#ifndef SP_ADVISOR_H
#define SP_ADVISOR_H

#include <stdint.h>

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

#endif
