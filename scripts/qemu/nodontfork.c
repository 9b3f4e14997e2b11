/*
 * nodontfork.c - libnodontfork.so, a WORKAROUND used by scripts/qemu/
 * guests.sh in its "samepage-nodc" mode only; not part of samepage.
 *
 * QEMU marks every guest RAM block MADV_DONTFORK (ram_block_add(), so
 * that a forked helper never shares guest RAM: needed with vfio/vhost
 * pinning, harmless to drop for a TCG guest that never forks).  samepage's
 * Linux backend refuses to merge any VMA with VM_DONTCOPY ("dc" in
 * /proc/PID/smaps; src/lib/mem/lx_scan.c bad_vmflags()), because the
 * MAP_FIXED of a store run would drop the flag.  So stock `samepage run`
 * merges nothing of a QEMU guest.  Preloaded AFTER the samepage shim
 * (samepage run puts its shim first in LD_PRELOAD), this turns
 * madvise(MADV_DONTFORK) into a successful no-op, so the guest RAM VMA
 * keeps no "dc" and samepage can merge it.  Every other call passes on.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/mman.h>

int madvise(void *addr, size_t len, int advice)
{
	static int (*next)(void *, size_t, int);

	if (advice == MADV_DONTFORK)
		return 0;
	if (!next)
		next = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	return next(addr, len, advice);
}
