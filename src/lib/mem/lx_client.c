/*
 * lx_client.c - the backend's side of samepaged: stable pages shared with
 * other processes of the trust domain.
 *
 * When $SAMEPAGE_SOCKET names a daemon (`samepage run` sets it), pages the
 * engine finds no partner for in this process are looked up there by
 * hash, one message per window (lx_lookup, the engine's ops->lookup).
 * The daemon answers with a page of its store (we map its segment's
 * read-only fd on first use, as a global entry of seg[]), or "upload"
 * when another process nominated the same hash: we then send the page's
 * bytes and the daemon makes (or finds) the stable page.  Either way the
 * engine compares our held page with the store page before mapping it;
 * the daemon never learns more than a hash unless asked for bytes, and
 * we never trust it beyond a page it cannot change (the store is sealed).
 *
 * References: the daemon counts one per page per process and frees a
 * page only when none is left and no mapping can reach it.  We count the
 * engine's uses (one per page of ours that maps it, REC_NAMED, and one
 * per lookup answer not merged yet) and give the daemon's reference
 * back when ours drop to zero (batched, sent before any other request so
 * that order is kept).
 *
 * Failure: any error or timeout closes the connection; the pages already
 * mapped stay valid (we hold the segment fds), their segments are marked
 * lost (no reference bookkeeping any more), and merging goes on inside
 * the process.  We reconnect every few seconds, but only to a daemon of
 * another run (epoch): the one that dropped us may have reused the pages
 * we stopped counting.  A forked child reconnects as itself and claims
 * the pages it inherited.
 *
 * Context: everything runs under the engine lock (ops) or the agent's
 * memory lock (reports), which serialise use of the socket.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "linux.h"
#include "lx_sys.h"

#define TIMEOUT_MS 3000
#define RETRY_MS 2000
#define SEG_BYTES(pages) ((size_t)(pages) * LX_PS)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the connection ----------------------------------------------------- */

static void dir_unmap(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;

	if (!c->dir)
		return;
	munmap((void *)(uintptr_t)c->dir, spp_dir_bytes(c->dir_n));
	c->dir = NULL;
}

/* The daemon run we counted references with is gone to us: its
 * segments become lost (mapped, never counted again), and we forget
 * which of its segments we had and every count. */
static void forget_run(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;

	for (unsigned k = 0; k < lx->nseg; k++)
		if (lx->seg[k].global == 1)
			lx->seg[k].global = 2;
	for (unsigned k = 0; k < 256; k++)
		c->gmap[k] = -1;
	sp_u32map_clear(&c->uses);
	dir_unmap(lx);
}

static void cl_down(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;

	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	c->retry_ms = now_ms() + RETRY_MS;
	forget_run(lx);
	c->nunref = 0;
	c->now[0] = c->now[1] = 0;
}

static int cl_flush(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;
	int err;

	if (!c->nunref || c->sock < 0) {
		c->nunref = 0;
		return 0;
	}
	err = spp_send(c->sock, SPP_UNREF, c->nunref, c->unref,
		       c->nunref * sizeof(*c->unref), -1, 0);
	c->nunref = 0;
	if (err)
		cl_down(lx);
	return err;
}

/*
 * One-way messages.  At KSM's default rate an agent scans about 50 pages
 * per wake, and a HINT or NOMINATE sent per wake cost the daemon a
 * wake-up (poll, recvmsg) and us a socket wake-up each, for a few
 * hashes: together about a fifth of the merger's CPU at that rate.  So
 * their hashes gather in c->ow[] and go once half of LX_ONEWAY_MAX are
 * in, or when a report is sent (every 250 ms at most) or a pass ends.
 * A window of 128 such pages or more (every window at full speed) goes
 * at once, as before: held back a window, hints paired a little later
 * and the headline converged 0.01-0.03 s later in most of 7 pairs.
 * Nothing waits for these messages: the daemon pairs or records a hash
 * whenever it arrives, before the next look at its page.
 */
enum { OW_HINT, OW_NOMINATE };
static const uint32_t ow_type[2] = { SPP_HINT, SPP_NOMINATE };

/* Send the gathered hashes of kind @k.  Return: 0, or -errno with the
 * connection dropped. */
static int ow_send(struct sp_linux *lx, unsigned k)
{
	struct lx_client *c = &lx->cl;
	uint32_t n = c->now[k];
	int err;

	c->now[k] = 0;
	if (!n || c->sock < 0)
		return 0;
	err = spp_send(c->sock, ow_type[k], n, c->ow[k], n * 8, -1, 0);
	if (err)
		cl_down(lx);
	return err;
}

_Static_assert(LX_HOLD_MAX <= LX_ONEWAY_MAX, "a window's hashes fit");

/* Gather @n (at most LX_ONEWAY_MAX) hashes of kind @k. */
static void ow_add(struct sp_linux *lx, unsigned k, const uint64_t *h,
		   uint32_t n)
{
	struct lx_client *c = &lx->cl;

	if (c->now[k] + n > LX_ONEWAY_MAX && ow_send(lx, k))
		return;
	memcpy(c->ow[k] + c->now[k], h, n * sizeof(*h));
	c->now[k] += n;
	if (c->now[k] >= LX_ONEWAY_MAX / 2)
		ow_send(lx, k);
}

void lx_client_flush(struct sp_linux *lx)
{
	if (!ow_send(lx, OW_HINT))
		ow_send(lx, OW_NOMINATE);
}

/* Give back the daemon's references on every page we count (after a
 * fork, in the child, the counts are the parent's: claim them instead). */
static void claim_all(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;
	struct spp_ref *r = (struct spp_ref *)(void *)(c->buf + SPP_MAX_MSG);
	uint32_t m = 0, page, n;
	uint64_t pos = 0;
	int more = 1;

	while (more && c->sock >= 0) {
		more = sp_u32map_next(&c->uses, &pos, &page, &n);
		if (more) {
			struct lx_seg *seg = lx_seg_of(lx, page);

			if (seg && seg->global == 1)
				r[m++] = (struct spp_ref){ seg->gseg,
							   page - seg->base };
		}
		if (m && (m == SPP_MAX_ITEMS || !more)) {
			if (spp_call(c->sock, SPP_CLAIM, m, r, m * sizeof(*r),
				     SPP_CLAIM_R, c->buf, NULL) < 0)
				cl_down(lx);
			m = 0;
		}
	}
}

static int cl_up(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;
	struct spp_hello h = { SPP_VERSION, (uint32_t)getpid() };
	struct spp_hello_r r;
	int inherited = c->sock == -2;	/* a fork child's first connect */
	ssize_t n;

	if (c->sock >= 0)
		return 0;
	if (!c->path[0] || now_ms() < c->retry_ms)
		return -ENOTCONN;
	c->sock = spp_connect(c->path, TIMEOUT_MS);
	if (c->sock < 0) {
		c->sock = inherited ? -2 : -1;
		c->retry_ms = now_ms() + RETRY_MS;
		return -ENOTCONN;
	}
	c->intern_max = spp_intern_fit(c->sock);
	n = spp_call(c->sock, SPP_HELLO, 1, &h, sizeof(h), SPP_HELLO_R, c->buf,
		     NULL);
	if (n < 0) {
		close(c->sock);
		c->sock = inherited ? -2 : -1;
		c->retry_ms = now_ms() + RETRY_MS;
		return -ENOTCONN;
	}
	memcpy(&r, c->buf + sizeof(struct spp_hdr), sizeof(r));
	if (r.seg_pages != LX_SEG_PAGES) {
		close(c->sock);
		c->sock = -1;
		c->path[0] = 0;		/* not a daemon we can use: stop */
		return -EPROTO;
	}
	if (r.epoch == c->epoch && !inherited) {
		/* The run that dropped us: our lost pages may be reused by
		 * now, so we do not mix with it; wait for another run. */
		close(c->sock);
		c->sock = -1;
		c->retry_ms = now_ms() + 10 * RETRY_MS;
		return -ENOTCONN;
	}
	if (inherited && r.epoch == c->epoch) {
		claim_all(lx);
		return c->sock >= 0 ? 0 : -ENOTCONN;
	}
	/* A new run: what we hold of an older one is ours alone now. */
	forget_run(lx);
	c->epoch = r.epoch;
	return 0;
}

/* The seg[] index of daemon segment @g, mapped on first use. */
static int seg_get(struct sp_linux *lx, uint32_t g)
{
	struct lx_client *c = &lx->cl;
	struct spp_seg sr;
	struct lx_seg *seg;
	struct stat st;
	void *view;
	int fd = -1;
	ssize_t n;

	if (g >= 256)
		return -EINVAL;
	if (c->gmap[g] >= 0)
		return c->gmap[g];
	if (lx->nseg == LX_MAX_SEGS)
		return -ENOSPC;
	n = spp_call(c->sock, SPP_GETSEG, 1, &g, sizeof(g), SPP_SEG, c->buf, &fd);
	if (n < 0 || fd < 0) {
		if (n != -ESRCH && n != -EINVAL)
			cl_down(lx);
		return n < 0 ? (int)n : -EPROTO;
	}
	memcpy(&sr, c->buf + sizeof(struct spp_hdr), sizeof(sr));
	if (sr.seg != g || sr.pages != LX_SEG_PAGES || fstat(fd, &st)) {
		close(fd);
		return -EPROTO;
	}
	view = mmap(NULL, SEG_BYTES(LX_SEG_PAGES), PROT_READ,
		    MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (view == MAP_FAILED) {
		close(fd);
		return -ENOMEM;
	}
	if (lx_excl_add(lx, (uintptr_t)view,
			(uintptr_t)view + SEG_BYTES(LX_SEG_PAGES))) {
		munmap(view, SEG_BYTES(LX_SEG_PAGES));
		close(fd);
		return -ENOMEM;
	}
	seg = &lx->seg[lx->nseg];
	memset(seg, 0, sizeof(*seg));
	seg->fd = fd;
	seg->base = lx->nseg * LX_SEG_PAGES;
	seg->size = SEG_BYTES(LX_SEG_PAGES);
	seg->view = view;
	seg->dev = st.st_dev;
	seg->ino = st.st_ino;
	seg->frozen = 1;
	seg->global = 1;
	seg->gseg = g;
	c->gmap[g] = (int16_t)lx->nseg;
	return (int)lx->nseg++;
}

/* Map the daemon's current directory (GETDIR).  Return: 0 or -errno;
 * without one every hash is simply asked (LOOKUP). */
static int dir_get(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;
	uint32_t zero = 0;
	struct spp_dir r;
	struct stat st;
	size_t len;
	void *view;
	int fd = -1;
	ssize_t n;

	dir_unmap(lx);
	n = spp_call(c->sock, SPP_GETDIR, 1, &zero, sizeof(zero), SPP_DIR,
		     c->buf, &fd);
	if (n < 0 || fd < 0) {
		if (n < 0 && n != -ENOENT && n != -ENOMEM)
			cl_down(lx);
		return n < 0 ? (int)n : -EPROTO;
	}
	memcpy(&r, c->buf + sizeof(struct spp_hdr), sizeof(r));
	len = spp_dir_bytes(r.entries);
	if (r.entries < 2 * SPP_DIR_WAYS || r.entries > SPP_DIR_MAX ||
	    (r.entries & (r.entries - 1)) || !r.tag || r.tag >= SPP_DIR_STORED ||
	    fstat(fd, &st) || (size_t)st.st_size != len) {
		close(fd);
		return -EPROTO;
	}
	view = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (view == MAP_FAILED)
		return -ENOMEM;
	/* Not added to the excluded ranges (as segment views are, for
	 * life): it is unmapped again when it retires, and the list merges
	 * touching ranges, so the exclusion could outlive it and cover
	 * the program's next mapping at those addresses.  A shared file
	 * mapping is never registered anyway. */
	if (((const struct spp_dir_hdr *)view)->magic != SPP_DIR_MAGIC ||
	    ((const struct spp_dir_hdr *)view)->entries != r.entries) {
		munmap(view, len);
		return -EPROTO;
	}
	c->dir = view;
	c->dir_n = r.entries;
	c->tag = r.tag;
	return 0;
}

/* The directory mapped and current: asked for (GETDIR) if there is none
 * yet or the daemon retired ours.  Return: 0, or -errno (c->dir may then
 * be NULL). */
static int dir_fresh(struct sp_linux *lx)
{
	const struct lx_client *c = &lx->cl;

	if (c->dir && !__atomic_load_n(&c->dir->retired, __ATOMIC_ACQUIRE))
		return 0;
	return dir_get(lx);
}

/* What to do with a hash, from the directory. */
enum { DIR_NOMINATE, DIR_SKIP, DIR_UPLOAD, DIR_ASK, DIR_PAIRED };

/* What the directory says of @hash: stored, ask for it; nominated by
 * another process, upload it; by two or more (PAIRED), likewise; by us
 * only, nothing; unknown, nominate. */
static int dir_class(const struct lx_client *c, uint64_t hash)
{
	uint64_t t = spp_dir_find((const uint64_t *)(const void *)(c->dir + 1),
				  c->dir_n, hash, c->tag);

	if (!t)
		return DIR_NOMINATE;
	if (t == SPP_DIR_STORED)
		return DIR_ASK;
	if (t == SPP_DIR_PAIRED)
		return DIR_PAIRED;
	return t == c->tag ? DIR_SKIP : DIR_UPLOAD;
}

/* Start loading the directory sets of @hash[0, n), all of them before
 * the first is classified (see spp_dir_prefetch). */
static void dir_prefetch(const struct lx_client *c, const uint64_t *hash,
			 size_t n)
{
	if (!c->dir)
		return;
	for (size_t i = 0; i < n; i++)
		spp_dir_prefetch((const uint64_t *)(const void *)(c->dir + 1),
				 c->dir_n, hash[i]);
}

/* Our number for a page the daemon named (a reference we now count), or
 * SP_SPAGE_NONE (its reference is given back). */
static sp_spage_t adopt(struct sp_linux *lx, const struct spp_ref *r)
{
	int k;

	if (r->seg >= SPP_SEG_UPLOAD || r->slot >= LX_SEG_PAGES)
		return SP_SPAGE_NONE;
	k = seg_get(lx, r->seg);
	if (k < 0) {
		if (lx->cl.sock >= 0 && lx->cl.nunref < SPP_MAX_ITEMS)
			lx->cl.unref[lx->cl.nunref++] = *r;
		return SP_SPAGE_NONE;
	}
	if (sp_u32map_inc(&lx->cl.uses, &lx->mem, lx->seg[k].base + r->slot) < 0) {
		if (lx->cl.nunref < SPP_MAX_ITEMS)
			lx->cl.unref[lx->cl.nunref++] = *r;
		return SP_SPAGE_NONE;
	}
	return lx->seg[k].base + r->slot;
}

/* INTERN messages sent before the first answer is read.  Each answer
 * waits in our receive queue, which holds net.unix.max_dgram_qlen (10 by
 * default) messages; a daemon that cannot queue one drops the client. */
#define UPLOAD_DEPTH 4

/* Send one INTERN with the bytes of pages @idx[0..m), straight from
 * the program's memory: the kernel copies them into the message, as it
 * would have from our buffer.  A write meanwhile only makes a page the
 * daemon stores under its own hash of what it got; we compare before
 * mapping anything, as always.  Return: 0 if sent (@sent gets the
 * indices), -EFAULT if a page could not be read (nothing was sent:
 * the caller copies instead), or -1 if the connection failed. */
static int upload_direct(struct sp_linux *lx, const uintptr_t *addr,
			 const unsigned *idx, unsigned m, unsigned *sent)
{
	struct iovec iov[SPP_MAX_INTERN];
	int err;

	for (unsigned i = 0; i < m; i++) {
		/* a page we hold is not where the program sees it */
		if (lx_hold_of(lx, addr[idx[i]]))
			return -EFAULT;
		iov[i] = (struct iovec){ (void *)addr[idx[i]], LX_PS };
	}
	err = spp_sendv(lx->cl.sock, SPP_INTERN, m, iov, m, -1, 0);
	if (err == -EFAULT)
		return err;
	if (err) {
		cl_down(lx);
		return -1;
	}
	memcpy(sent, idx, m * sizeof(*idx));
	return 0;
}

/* Send one INTERN with the bytes of pages @idx[0..m) (those still
 * readable); @sent gets their indices.  Return: pages sent (0: none, no
 * message), or -1 if the connection failed. */
static int upload_send(struct sp_linux *lx, void *space, const uintptr_t *addr,
		       const unsigned *idx, unsigned m, unsigned *sent)
{
	struct lx_client *c = &lx->cl;
	uint8_t *pages = c->buf + SPP_MAX_MSG;
	unsigned k = 0;
	int err = upload_direct(lx, addr, idx, m, sent);

	if (err != -EFAULT)
		return err ? -1 : (int)m;
	for (unsigned i = 0; i < m; i++) {
		uint8_t *dst = pages + (size_t)k * LX_PS;
		const void *p = lx_peek(lx, space, addr[idx[i]], dst);

		if (!p)
			continue;	/* gone meanwhile */
		if (p != dst)
			memcpy(dst, p, LX_PS);
		sent[k++] = idx[i];
	}
	if (k && spp_send(c->sock, SPP_INTERN, k, pages, (size_t)k * LX_PS,
			  -1, 0)) {
		cl_down(lx);
		return -1;
	}
	return (int)k;
}

/* Read the answer to an INTERN of pages @sent[0..k) into @got (by page
 * index).  Return: 0, or -1 if the connection failed. */
static int upload_recv(struct sp_linux *lx, const unsigned *sent, unsigned k,
		       struct spp_ref *got)
{
	struct lx_client *c = &lx->cl;
	struct spp_ref r[SPP_MAX_INTERN];
	struct spp_hdr h;
	ssize_t n = spp_recv(c->sock, c->buf, NULL, 0);

	if (n == (ssize_t)(sizeof(h) + k * sizeof(*r)))
		memcpy(&h, c->buf, sizeof(h));
	if (n != (ssize_t)(sizeof(h) + k * sizeof(*r)) ||
	    h.type != SPP_INTERN_R) {
		cl_down(lx);
		return -1;
	}
	memcpy(r, c->buf + sizeof(h), k * sizeof(*r));
	for (unsigned i = 0; i < k; i++)
		got[sent[i]] = r[i];
	return 0;
}

/*
 * Send the bytes of pages @idx[0..m) and adopt what the daemon made.
 * Up to UPLOAD_DEPTH messages are in flight: the daemon stores one batch
 * while we read and send the next, and the scanner waits for the daemon
 * about once per UPLOAD_DEPTH batches instead of once per batch (on a
 * busy machine each wait is a wake-up of the daemon and then of us).
 * A full message (31 pages, 124 KiB) fills more than half of a default
 * send buffer (208 KiB), so a second send often waits for the daemon
 * to take the first: a larger buffer, or 8 messages of 15 pages in
 * flight, did not converge the headline workload any sooner.
 * Answers come in order (SOCK_SEQPACKET).  Nothing is adopted before
 * the last answer is in: adopting may itself call the daemon (for a
 * segment's fd), which must not meet an answer still in the queue.  On
 * a failure, what was not adopted is simply not ours: the daemon drops
 * a lost client's references.
 */
static void upload(struct sp_linux *lx, void *space, const uintptr_t *addr,
		   const unsigned *idx, unsigned m, sp_spage_t *out)
{
	unsigned sent[UPLOAD_DEPTH][SPP_MAX_INTERN], cnt[UPLOAD_DEPTH];
	unsigned head = 0, tail = 0;	/* messages sent / answered */
	struct spp_ref got[LX_HOLD_MAX];

	for (unsigned i = 0; i < m; i++)
		got[idx[i]].seg = SPP_SEG_NONE;
	for (unsigned i = 0; i < m || tail < head;) {
		if (i < m && head - tail < UPLOAD_DEPTH) {
			unsigned b = m - i < lx->cl.intern_max ?
					     m - i : lx->cl.intern_max;
			int k = upload_send(lx, space, addr, idx + i, b,
					    sent[head % UPLOAD_DEPTH]);

			i += b;
			if (k < 0)
				return;
			if (k > 0)
				cnt[head++ % UPLOAD_DEPTH] = (unsigned)k;
			continue;
		}
		if (upload_recv(lx, sent[tail % UPLOAD_DEPTH],
				cnt[tail % UPLOAD_DEPTH], got))
			return;
		tail++;
	}
	for (unsigned i = 0; i < m && lx->cl.sock >= 0; i++)
		if (got[idx[i]].seg != SPP_SEG_NONE)
			out[idx[i]] = adopt(lx, &got[idx[i]]);
}

/* One round trip: @type (LOOKUP or FIND) for hashes @h[0, n), their
 * answers into @r.  Return: 0, or -1 if the connection failed (then it
 * is down). */
static int ask_refs(struct sp_linux *lx, uint32_t type, const uint64_t *h,
		    unsigned n, struct spp_ref *r)
{
	struct lx_client *c = &lx->cl;
	ssize_t got = spp_call(c->sock, type, n, h, n * 8, SPP_LOOKUP_R,
			       c->buf, NULL);

	if (got != (ssize_t)(sizeof(struct spp_hdr) + n * sizeof(*r))) {
		cl_down(lx);
		return -1;
	}
	memcpy(r, c->buf + sizeof(struct spp_hdr), n * sizeof(*r));
	return 0;
}

/*
 * Hashes of pages with no partner in this process.  The directory says
 * which need the daemon: stored ones are asked for (LOOKUP, one round
 * trip for the window), those another process nominated are uploaded at
 * once, unknown ones are nominated one way (no answer to wait for), and
 * those we nominated before cost nothing.  A stale directory costs only
 * a useless message: the daemon decides from its own index.
 */
int lx_lookup(void *be, void *space, size_t n, const uintptr_t *addr,
	      const uint64_t *hash, sp_spage_t *out)
{
	struct sp_linux *lx = be;
	struct lx_client *c = &lx->cl;
	struct spp_ref r[LX_HOLD_MAX];
	uint64_t ask[LX_HOLD_MAX], nom[LX_HOLD_MAX];
	unsigned up[LX_HOLD_MAX], nup = 0, nask = 0, nnom = 0;
	uint8_t cls[LX_HOLD_MAX];

	for (size_t i = 0; i < n; i++)
		out[i] = SP_SPAGE_NONE;
	if (n > LX_HOLD_MAX)
		return -EINVAL;
	if (cl_up(lx) || cl_flush(lx))
		return 0;
	if (dir_fresh(lx) && c->sock < 0)
		return 0;
	dir_prefetch(c, hash, n);
	for (size_t i = 0; i < n; i++) {
		cls[i] = c->dir ? (uint8_t)dir_class(c, hash[i]) : DIR_ASK;
		if (cls[i] == DIR_PAIRED)
			cls[i] = DIR_UPLOAD;
		if (cls[i] == DIR_ASK)
			ask[nask++] = hash[i];
		else if (cls[i] == DIR_NOMINATE)
			nom[nnom++] = hash[i];
	}
	if (nnom)
		ow_add(lx, OW_NOMINATE, nom, nnom);
	if (nask && ask_refs(lx, SPP_LOOKUP, ask, nask, r))
		return 0;
	for (size_t i = 0, k = 0; i < n && c->sock >= 0; i++) {
		if (cls[i] == DIR_ASK) {
			if (r[k].seg == SPP_SEG_UPLOAD)
				cls[i] = DIR_UPLOAD;
			else if (r[k].seg != SPP_SEG_NONE)
				out[i] = adopt(lx, &r[k]);
			k++;
		}
		if (cls[i] == DIR_UPLOAD)
			up[nup++] = (unsigned)i;
	}
	if (nup && c->sock >= 0)
		upload(lx, space, addr, up, nup, out);
	cl_flush(lx);
	return 0;
}

/* FIND the @nask hashes @ask (pages not seen stable yet, that the
 * directory shows stored), for pages @at[] of @out: each stored page
 * named is adopted, nothing else happens.  Return: 0, or -1 if the
 * connection failed. */
static int find_stored(struct sp_linux *lx, const uint64_t *ask,
		       const unsigned *at, unsigned nask, sp_spage_t *out)
{
	struct spp_ref r[LX_HOLD_MAX];

	if (ask_refs(lx, SPP_FIND, ask, nask, r))
		return -1;
	for (unsigned k = 0; k < nask && lx->cl.sock >= 0; k++)
		if (r[k].seg != SPP_SEG_NONE && r[k].seg != SPP_SEG_UPLOAD)
			out[at[k]] = adopt(lx, &r[k]);
	return 0;
}

/*
 * Pages looked at for the first time, or changed (ops->look).
 *
 * SP_LOOK_FIND: a page whose hash the directory shows stored is asked
 * for (FIND, one round trip for the window, only if there is one), so
 * that a process that starts after others, or a page rewritten with
 * content they share, merges at its first look as KSM merges a page
 * equal to a stable page; the daemon never nominates or asks for the
 * bytes of such a page, which may be volatile.
 *
 * SP_LOOK_FIRST: nothing else merges at a first look, but two
 * processes that hold the same content can find each other one pass
 * earlier: hashes unknown to the directory, or nominated by another
 * process only, go to the daemon as a HINT (one way), and when two
 * processes hinted (or one hinted, one nominated) the same hash the
 * daemon marks it PAIRED.  At their next look both see PAIRED: the
 * first to get there uploads and maps it, the other finds it stored,
 * and both merge at their second look, as pages of one process do.
 * Without this, the second process uploads at its second look and the
 * first can map the page only at its third.  PAIRED and our own hashes
 * cost nothing now.
 */
int lx_look(void *be, void *space, size_t n, const uintptr_t *addr,
	    const uint64_t *hash, const uint8_t *how, sp_spage_t *out)
{
	struct sp_linux *lx = be;
	struct lx_client *c = &lx->cl;
	uint64_t nom[LX_HOLD_MAX], ask[LX_HOLD_MAX];
	unsigned at[LX_HOLD_MAX], nnom = 0, nask = 0;

	(void)space;
	(void)addr;
	for (size_t i = 0; i < n; i++)
		out[i] = SP_SPAGE_NONE;
	if (n > LX_HOLD_MAX)
		return -EINVAL;
	if (cl_up(lx) || cl_flush(lx))
		return 0;
	if (dir_fresh(lx))
		return 0;
	dir_prefetch(c, hash, n);
	for (size_t i = 0; i < n; i++) {
		int cls = dir_class(c, hash[i]);

		if (cls == DIR_ASK && (how[i] & SP_LOOK_FIND)) {
			at[nask] = (unsigned)i;
			ask[nask++] = hash[i];
		} else if ((cls == DIR_NOMINATE || cls == DIR_UPLOAD) &&
			   (how[i] & SP_LOOK_FIRST)) {
			nom[nnom++] = hash[i];
		}
	}
	if (nnom)
		ow_add(lx, OW_HINT, nom, nnom);
	if (nask && !find_stored(lx, ask, at, nask, out))
		cl_flush(lx);
	return 0;
}

void lx_client_release(struct sp_linux *lx, struct lx_seg *seg, uint32_t page)
{
	struct lx_client *c = &lx->cl;

	if (seg->global != 1 || sp_u32map_dec(&c->uses, page) != 0)
		return;		/* a lost daemon's page, or still used */
	if (c->sock < 0)
		return;
	c->unref[c->nunref++] = (struct spp_ref){ seg->gseg, page - seg->base };
	if (c->nunref == SPP_MAX_ITEMS)
		cl_flush(lx);
}

int lx_client_report(struct sp_linux *lx, struct spp_report *rep,
		     struct spp_knobs *knobs)
{
	struct lx_client *c = &lx->cl;
	ssize_t n;

	if (cl_up(lx))
		return 0;
	lx_client_flush(lx);
	if (c->sock < 0 || cl_flush(lx))
		return 0;
	n = spp_call(c->sock, SPP_REPORT, 1, rep, sizeof(*rep), SPP_KNOBS,
		     c->buf, NULL);
	if (n < 0) {
		cl_down(lx);
		return 0;
	}
	memcpy(knobs, c->buf + sizeof(struct spp_hdr), sizeof(*knobs));
	return 1;
}

void lx_client_fork_child(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;

	if (c->sock >= 0)
		close(c->sock);		/* the parent's connection: not ours */
	dir_unmap(lx);			/* and the parent's tag */
	c->sock = c->path[0] ? -2 : -1;
	c->nunref = 0;
	c->now[0] = c->now[1] = 0;	/* the parent's looks, sent by it */
	c->retry_ms = 0;
}

uint64_t lx_client_pages(const struct sp_linux *lx)
{
	return lx->cl.uses.n;
}

int lx_client_init(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;
	const char *p = getenv("SAMEPAGE_SOCKET");

	c->sock = -1;
	for (unsigned k = 0; k < 256; k++)
		c->gmap[k] = -1;
	if (!p || !*p || strlen(p) >= sizeof(c->path))
		return 0;
	c->buf = lx_map(2 * (size_t)SPP_MAX_MSG);
	c->unref = sp_mem_alloc(&lx->mem, SPP_MAX_ITEMS * sizeof(*c->unref));
	for (unsigned k = 0; k < 2; k++)
		c->ow[k] = sp_mem_alloc(&lx->mem, LX_ONEWAY_MAX * sizeof(uint64_t));
	if (!c->buf || !c->unref || !c->ow[0] || !c->ow[1])
		return -ENOMEM;
	strcpy(c->path, p);
	return 0;
}

void lx_client_free(struct sp_linux *lx)
{
	struct lx_client *c = &lx->cl;

	lx_client_flush(lx);
	cl_flush(lx);
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	dir_unmap(lx);
	if (c->buf)
		lx_unmap(c->buf, 2 * (size_t)SPP_MAX_MSG);
	sp_mem_free(&lx->mem, c->unref, SPP_MAX_ITEMS * sizeof(*c->unref));
	for (unsigned k = 0; k < 2; k++) {
		sp_mem_free(&lx->mem, c->ow[k], LX_ONEWAY_MAX * sizeof(uint64_t));
		c->ow[k] = NULL;
		c->now[k] = 0;
	}
	sp_u32map_free(&c->uses, &lx->mem);
	c->buf = NULL;
	c->unref = NULL;
}
