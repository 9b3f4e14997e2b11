/*
 * samepaged.c - the samepage daemon: holds the shared stable store and its
 * index for each trust domain, and answers the in-process agents (and
 * `samepage stat/set`) over a unix SOCK_SEQPACKET socket (proto.h).
 *
 *   samepaged [--socket PATH] [--idle-exit SECS] [--foreground]
 *   samepaged --system [--domain UID,UID...]... [--socket PATH]
 *
 * Per-user (default): the socket lives in a 0700 directory of ours and
 * only our uid may talk to us (SO_PEERCRED): one trust domain.  System
 * (--system, for systemd socket activation: the socket comes as fd 3 per
 * LISTEN_FDS/LISTEN_PID): one domain, with its own store, per uid, unless
 * --domain puts several uids into one.  See docs/security.md.
 *
 * One thread, one poll loop.  The daemon never blocks on a client: every
 * answer is sent with MSG_DONTWAIT and a client whose socket is full (it
 * does not read) is dropped, so a stuck or malicious process cannot hold
 * up the others.  Every message is length-checked (spp_check) before its
 * body is read; a malformed one gets ERR -EBADMSG.  Dropping a client
 * drops its references; its pages are reclaimed only once no mapping in
 * the domain can reach them (store_reclaim, once a second).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "store.h"
#include "util/u32map.h"

#define MAX_CLIENTS 4096
#define MAX_DOMAINS 256
#define MAX_DOMAIN_UIDS 64
#define CLIENT_QUOTA (1u << 24)		/* references per process */

struct domain {
	uid_t uid[MAX_DOMAIN_UIDS];
	unsigned nuid;
	struct store *st;		/* NULL until first used */
	struct spp_knobs knobs;		/* .scan_pages: the sum over its
					 * clients of scan_pages_of() */
};

struct client {
	int fd;
	uid_t uid;
	pid_t pid;			/* from SO_PEERCRED */
	uint32_t id;
	int agent;			/* said HELLO */
	struct domain *dom;
	struct sp_u32map refs;		/* pages it holds a reference on
					 * (count 1 each) */
	struct spp_report rep;
	int has_rep;
};

static struct {
	int lfd;
	int system;
	uint64_t epoch;
	struct domain dom[MAX_DOMAINS];
	unsigned ndom;
	struct client *cl[MAX_CLIENTS];
	unsigned ncl;
	uint32_t next_id;
	unsigned idle_exit;		/* seconds without clients, 0: never */
	char path[108];
	int own_path;			/* we bound it: unlink at exit */
	_Alignas(16) uint8_t buf[SPP_MAX_MSG];	/* bodies are read in place */
	_Alignas(16) uint8_t out[SPP_MAX_MSG];
	volatile sig_atomic_t quit;
} d;

/* The daemon's own bookkeeping, counted (meta_bytes). */
static uint64_t refs_bytes;
static const struct sp_mem refs_mem = { &sp_libc_allocator, &refs_bytes };

/* ---- domains ------------------------------------------------------------ */

static struct domain *domain_of(uid_t uid)
{
	struct domain *dm;

	for (unsigned k = 0; k < d.ndom; k++)
		for (unsigned u = 0; u < d.dom[k].nuid; u++)
			if (d.dom[k].uid[u] == uid)
				return &d.dom[k];
	if (!d.system && d.ndom)
		return NULL;		/* per-user: our uid only */
	if (d.ndom == MAX_DOMAINS)
		return NULL;
	dm = &d.dom[d.ndom++];
	memset(dm, 0, sizeof(*dm));
	dm->uid[dm->nuid++] = uid;
	for (int k = 0; k < SPK_COUNT; k++)
		dm->knobs.v[k] = spp_knob_default[k];
	return dm;
}

static int domain_store(struct domain *dm)
{
	return dm->st ? 0 : store_new(&dm->st);
}

/* ---- clients ------------------------------------------------------------ */

/* The pages @c scans, as it last reported them: 0 before its first
 * report, and held within what a 57-bit address space has pages for
 * (no agent reports more, nor a negative figure), so that the sum of
 * MAX_CLIENTS of them cannot wrap. */
static uint64_t scan_pages_of(const struct client *c)
{
	int64_t v = c->has_rep ? c->rep.v[SPS_KSM_RMAP_ITEMS] : 0;

	if (v <= 0)
		return 0;
	return (uint64_t)v < (1ull << 45) ? (uint64_t)v : 1ull << 45;
}

static void client_drop(unsigned i)
{
	struct client *c = d.cl[i];

	if (c->dom)
		c->dom->knobs.scan_pages -= scan_pages_of(c);

	if (c->dom && c->dom->st && c->agent)
		store_forget_client(c->dom->st, c->id);
	if (c->dom && c->dom->st) {
		uint64_t pos = 0;
		uint32_t g, n;

		while (sp_u32map_next(&c->refs, &pos, &g, &n))
			store_unref(c->dom->st, g);
	}
	sp_u32map_free(&c->refs, &refs_mem);
	close(c->fd);
	free(c);
	d.cl[i] = d.cl[--d.ncl];
}

static void client_accept(void)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct client *c;
	int fd = accept4(d.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) ||
	    d.ncl == MAX_CLIENTS || !(c = calloc(1, sizeof(*c)))) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->uid = cr.uid;
	c->pid = cr.pid;
	c->id = ++d.next_id;
	c->dom = domain_of(cr.uid);
	if (!c->dom) {
		/* Not of a domain we serve: say so and hang up. */
		int32_t e = -EACCES;

		spp_send(fd, SPP_ERR, 1, &e, sizeof(e), -1, MSG_DONTWAIT);
		close(fd);
		free(c);
		return;
	}
	d.cl[d.ncl++] = c;
}

static int reply(struct client *c, uint32_t type, uint32_t count,
		 const void *body, size_t len, int fd)
{
	return spp_send(c->fd, type, count, body, len, fd, MSG_DONTWAIT);
}

static int reply_err(struct client *c, int err)
{
	int32_t e = err;

	return reply(c, SPP_ERR, 1, &e, sizeof(e), -1);
}

/* Take a reference for @c on @g (once per client).  Return: 0 or -errno. */
static int take(struct client *c, uint32_t g)
{
	int64_t r;

	if (sp_u32map_get(&c->refs, g))
		return 0;
	if (c->refs.n >= CLIENT_QUOTA)
		return -EDQUOT;
	r = sp_u32map_inc(&c->refs, &refs_mem, g);
	if (r < 0)
		return (int)r;
	store_ref(c->dom->st, g);
	return 0;
}

static struct spp_ref ref_of(uint32_t g)
{
	return (struct spp_ref){ g >> ST_SEG_SHIFT, g & (ST_SEG_PAGES - 1) };
}

/* Milliseconds on the monotonic clock. */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* LOOKUP (@nominate 1) or FIND (0) of hashes @h[0, n): a reference to
 * each stored page, taken for the client; for LOOKUP, a hash not stored
 * is nominated, and UPLOAD answered if another client nominated it. */
static int do_lookup(struct client *c, const uint64_t *h, uint32_t n,
		     int nominate)
{
	struct spp_ref *r = (struct spp_ref *)d.out;

	store_prefetch(c->dom->st, h, n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t g = store_lookup(c->dom->st, h[i]);

		if (g != ST_NONE && !take(c, g))
			r[i] = ref_of(g);
		else if (g == ST_NONE && nominate &&
			 store_nominate(c->dom->st, h[i], c->id))
			r[i] = (struct spp_ref){ SPP_SEG_UPLOAD, 0 };
		else
			r[i] = (struct spp_ref){ SPP_SEG_NONE, 0 };
	}
	return reply(c, SPP_LOOKUP_R, n, r, n * sizeof(*r), -1);
}

/* Only as many pages as the client has room for in its quota are
 * stored (each takes at most one reference more), so that no page is
 * made that nobody holds. */
static int do_intern(struct client *c, const uint8_t *pages, uint32_t n)
{
	_Static_assert(SPP_MAX_INTERN <= ST_INTERN_MAX, "an INTERN in one call");
	struct spp_ref r[SPP_MAX_INTERN];
	uint32_t g[SPP_MAX_INTERN], room, m;
	int err;

	room = c->refs.n < CLIENT_QUOTA ? CLIENT_QUOTA - (uint32_t)c->refs.n : 0;
	m = n < room ? n : room;
	if (m)
		store_intern_many(c->dom->st, pages, m, g, &err);
	for (uint32_t i = m; i < n; i++)
		g[i] = ST_NONE;
	for (uint32_t i = 0; i < n; i++)
		r[i] = g[i] != ST_NONE && !take(c, g[i]) ?
			       ref_of(g[i]) : (struct spp_ref){ SPP_SEG_NONE, 0 };
	return reply(c, SPP_INTERN_R, n, r, n * sizeof(*r), -1);
}

static int valid_ref(const struct spp_ref *r, uint32_t *g)
{
	if (r->seg >= ST_MAX_SEGS || r->slot >= ST_SEG_PAGES)
		return 0;
	*g = r->seg << ST_SEG_SHIFT | r->slot;
	return 1;
}

static void do_unref(struct client *c, const struct spp_ref *r, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t g;

		if (valid_ref(&r[i], &g) && sp_u32map_dec(&c->refs, g) == 0)
			store_unref(c->dom->st, g);
	}
}

static int do_claim(struct client *c, const struct spp_ref *r, uint32_t n)
{
	uint32_t *ok = (uint32_t *)d.out;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t g;

		ok[i] = valid_ref(&r[i], &g) && store_live(c->dom->st, g) &&
			!take(c, g);
	}
	return reply(c, SPP_CLAIM_R, n, ok, n * sizeof(*ok), -1);
}

/* The domain's counters: the processes' own, plus the pages of the
 * shared store.  A process counts its pages that map a store page in
 * its ksm_merging_pages only (not in pages_shared or pages_sharing, see
 * records.h), so what they save is found here: every such page beyond
 * the first of each referenced store page. */
static void domain_stat(struct domain *dm, struct spp_report *out)
{
	struct store_stats ss = { 0 };
	int64_t named;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < d.ncl; i++) {
		struct client *c = d.cl[i];

		if (c->dom != dm || !c->has_rep)
			continue;
		out->pid++;
		for (int k = 0; k < SPS_COUNT; k++)
			if (k == SPS_FULL_SCANS || k == SPS_KSM_MERGE_ANY ||
			    k == SPS_PAGES_TO_SCAN)
				out->v[k] = c->rep.v[k] > out->v[k] ? c->rep.v[k]
								    : out->v[k];
			else
				out->v[k] += c->rep.v[k];
	}
	if (dm->st)
		store_stats_get(dm->st, &ss);
	/* merging = own stable pages' sharers (shared + sharing) + named */
	named = out->v[SPS_KSM_MERGING_PAGES] - out->v[SPS_PAGES_SHARED] -
		out->v[SPS_PAGES_SHARING];
	if (named < 0)
		named = 0;
	out->v[SPS_PAGES_SHARED] += (int64_t)ss.referenced;
	out->v[SPS_PAGES_SHARING] = out->v[SPS_KSM_MERGING_PAGES] -
				    out->v[SPS_PAGES_SHARED];
	if (out->v[SPS_PAGES_SHARING] < 0)
		out->v[SPS_PAGES_SHARING] = 0;
	out->v[SPS_GENERAL_PROFIT] += (named - (int64_t)ss.referenced) * 4096 -
				      (int64_t)ss.meta_bytes;
	out->v[SPS_SHARED_GLOBAL] = (int64_t)ss.live;
	/* with the per-process reference sets of every domain */
	out->v[SPS_META_BYTES] += (int64_t)(ss.meta_bytes + refs_bytes);
	{
		struct timespec ts;

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
		out->v[SPS_DAEMON_CPU_NS] = ts.tv_sec * 1000000000ll +
					    ts.tv_nsec;
	}
}

static int do_stat(struct client *c, uint32_t pid)
{
	struct spp_stat_r r;

	r.knobs = c->dom->knobs;
	if (!pid) {
		domain_stat(c->dom, &r.rep);
		return reply(c, SPP_STAT_R, 1, &r, sizeof(r), -1);
	}
	for (unsigned i = 0; i < d.ncl; i++)
		if (d.cl[i]->dom == c->dom && d.cl[i]->has_rep &&
		    (uint32_t)d.cl[i]->pid == pid) {
			r.rep = d.cl[i]->rep;
			return reply(c, SPP_STAT_R, 1, &r, sizeof(r), -1);
		}
	return reply_err(c, -ESRCH);
}

static int do_set(struct client *c, const struct spp_set *s)
{
	struct domain *dm = c->dom;

	if (s->knob >= SPK_COUNT || spp_knob_check(s->knob, s->value))
		return reply_err(c, -EINVAL);
	if (s->knob == SPK_MAX_PAGE_SHARING &&
	    s->value != dm->knobs.v[SPK_MAX_PAGE_SHARING]) {
		struct spp_report r;

		domain_stat(dm, &r);	/* KSM: not while stable pages exist */
		if (r.v[SPS_PAGES_SHARED] > 0 || r.v[SPS_SHARED_GLOBAL] > 0)
			return reply_err(c, -EBUSY);
	}
	if (s->knob == SPK_ADVISOR_MIN_PAGES_TO_SCAN &&
	    s->value > dm->knobs.v[SPK_ADVISOR_MAX_PAGES_TO_SCAN])
		return reply_err(c, -EINVAL);
	if (s->knob == SPK_ADVISOR_MAX_PAGES_TO_SCAN &&
	    s->value < dm->knobs.v[SPK_ADVISOR_MIN_PAGES_TO_SCAN])
		return reply_err(c, -EINVAL);
	dm->knobs.v[s->knob] = s->value;
	dm->knobs.generation++;
	return reply_err(c, 0);
}

/* Handle one well-formed message.  Return: 0, or -errno to drop. */
static int handle(struct client *c, size_t len)
{
	struct spp_hdr h;
	const uint8_t *body = d.buf + sizeof(h);

	(void)len;
	memcpy(&h, d.buf, sizeof(h));
	switch (h.type) {
	case SPP_HELLO: {
		struct spp_hello in;
		struct spp_hello_r r = { SPP_VERSION, 0, d.epoch, ST_SEG_PAGES, 0 };

		memcpy(&in, body, sizeof(in));
		if (in.version != SPP_VERSION)
			return reply_err(c, -EPROTONOSUPPORT);
		if (domain_store(c->dom))
			return reply_err(c, -ENOMEM);
		c->agent = 1;
		r.nseg = store_nseg(c->dom->st);
		return reply(c, SPP_HELLO_R, 1, &r, sizeof(r), -1);
	}
	case SPP_STAT: {
		uint32_t pid;

		memcpy(&pid, body, sizeof(pid));
		return do_stat(c, pid);
	}
	case SPP_SET: {
		struct spp_set s;

		memcpy(&s, body, sizeof(s));
		return do_set(c, &s);
	}
	default:
		break;
	}
	if (!c->agent)
		return reply_err(c, -ENOTCONN);		/* HELLO first */
	switch (h.type) {
	case SPP_GETSEG: {
		uint32_t seg;
		struct spp_seg r;
		int fd, err;

		memcpy(&seg, body, sizeof(seg));
		fd = store_seg_fd(c->dom->st, seg);
		if (fd < 0)
			return reply_err(c, fd);
		r = (struct spp_seg){ seg, ST_SEG_PAGES };
		err = reply(c, SPP_SEG, 1, &r, sizeof(r), fd);
		close(fd);
		return err;
	}
	case SPP_GETDIR: {
		struct spp_dir r = { 0, (uint32_t)spp_dir_tag(c->id) };
		int fd = store_dir_fd(c->dom->st, &r.entries), err;

		if (fd < 0)
			return reply_err(c, fd);
		err = reply(c, SPP_DIR, 1, &r, sizeof(r), fd);
		close(fd);
		return err;
	}
	case SPP_NOMINATE: {
		const uint64_t *hs = (const uint64_t *)(const void *)body;

		store_prefetch(c->dom->st, hs, h.count);
		for (uint32_t i = 0; i < h.count; i++)
			store_propose(c->dom->st, hs[i], c->id);
		return 0;
	}
	case SPP_HINT: {
		const uint64_t *hs = (const uint64_t *)(const void *)body;
		uint64_t ms = now_ms();

		store_prefetch(c->dom->st, hs, h.count);
		for (uint32_t i = 0; i < h.count; i++)
			store_hint(c->dom->st, hs[i], c->id, ms);
		return 0;
	}
	case SPP_LOOKUP:
		return do_lookup(c, (const uint64_t *)(const void *)body,
				 h.count, 1);
	case SPP_FIND:
		return do_lookup(c, (const uint64_t *)(const void *)body,
				 h.count, 0);
	case SPP_INTERN:
		return do_intern(c, body, h.count);
	case SPP_UNREF:
		do_unref(c, (const struct spp_ref *)(const void *)body, h.count);
		return 0;
	case SPP_CLAIM:
		return do_claim(c, (const struct spp_ref *)(const void *)body,
				h.count);
	case SPP_REPORT:
		/* A report replaces the last, in the domain's sum too. */
		c->dom->knobs.scan_pages -= scan_pages_of(c);
		memcpy(&c->rep, body, sizeof(c->rep));
		c->rep.pid = (uint32_t)c->pid;	/* the kernel's word, not its */
		c->has_rep = 1;
		c->dom->knobs.scan_pages += scan_pages_of(c);
		return reply(c, SPP_KNOBS, 1, &c->dom->knobs,
			     sizeof(c->dom->knobs), -1);
	default:
		return reply_err(c, -EBADMSG);	/* an answer type sent to us */
	}
}

/* Serve what client @i sent.  Return: 0, or -1 if it was dropped. */
static int client_read(unsigned i)
{
	struct client *c = d.cl[i];

	for (int k = 0; k < 64; k++) {	/* bounded: others get their turn */
		ssize_t n = spp_recv(c->fd, d.buf, NULL, MSG_DONTWAIT);

		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return 0;
		if (n == -EBADMSG) {
			if (reply_err(c, -EBADMSG))
				goto drop;
			continue;
		}
		if (n == 0) {
			/* End of stream, or an empty message (SEQPACKET
			 * cannot tell them apart by recv alone). */
			struct pollfd p = { c->fd, POLLRDHUP, 0 };

			if (poll(&p, 1, 0) != 0 || reply_err(c, -EBADMSG))
				goto drop;
			continue;
		}
		if (n < 0 || handle(c, (size_t)n))
			goto drop;
	}
	return 0;
drop:
	client_drop(i);
	return -1;
}

/* ---- set-up ------------------------------------------------------------- */

static void on_signal(int sig)
{
	(void)sig;
	d.quit = 1;
}

/* The per-user socket's directory: ours, 0700, created if missing. */
static int check_dir(const char *path)
{
	char dir[108];
	char *slash;
	struct stat sb;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	if (lstat(dir, &sb))
		return -errno;
	if (!S_ISDIR(sb.st_mode) || sb.st_uid != getuid() ||
	    (sb.st_mode & 077)) {
		fprintf(stderr, "samepaged: %s must be a directory of ours with "
				"mode 0700\n", dir);
		return -EPERM;
	}
	return 0;
}

static int listen_on(const char *path, int mode)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, probe;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	probe = spp_connect(path, 500);
	if (probe >= 0) {
		close(probe);
		return -EADDRINUSE;	/* a daemon answers there already */
	}
	unlink(path);			/* stale: nobody listens */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    chmod(path, (mode_t)mode) || listen(fd, 128)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int parse_domain(const char *arg)
{
	struct domain *dm;
	char *end;

	if (d.ndom == MAX_DOMAINS)
		return -ENOSPC;
	dm = &d.dom[d.ndom];
	memset(dm, 0, sizeof(*dm));
	for (const char *p = arg; *p;) {
		unsigned long u = strtoul(p, &end, 10);

		if (end == p || (*end && *end != ',') || dm->nuid == MAX_DOMAIN_UIDS)
			return -EINVAL;
		for (unsigned k = 0; k < d.ndom; k++)
			for (unsigned j = 0; j < d.dom[k].nuid; j++)
				if (d.dom[k].uid[j] == (uid_t)u)
					return -EINVAL;	/* in two domains */
		dm->uid[dm->nuid++] = (uid_t)u;
		p = *end ? end + 1 : end;
	}
	if (!dm->nuid)
		return -EINVAL;
	for (int k = 0; k < SPK_COUNT; k++)
		dm->knobs.v[k] = spp_knob_default[k];
	d.ndom++;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: samepaged [--socket PATH] [--idle-exit SECS] "
		   "[--foreground]\n"
		   "       samepaged --system [--domain UID,UID...]... "
		   "[--socket PATH]\n");
}

/* Seconds on the monotonic clock. */
static uint64_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "system", no_argument, NULL, 'S' },
		{ "domain", required_argument, NULL, 'd' },
		{ "idle-exit", required_argument, NULL, 'i' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *sock = NULL, *lp = getenv("LISTEN_PID");
	struct pollfd *pfd;
	uint64_t last_reclaim = now_s(), idle_since = now_s();
	int o, err, hints = 0;	/* some store keeps a hint table */

	d.lfd = -1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'S': d.system = 1; break;
		case 'd':
			if (parse_domain(optarg)) {
				fprintf(stderr, "samepaged: bad --domain '%s' "
						"(UID,UID,...; each uid once)\n",
					optarg);
				return 2;
			}
			break;
		case 'i': d.idle_exit = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'f': break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || (d.ndom && !d.system)) {
		usage(stderr);
		return 2;
	}
	if (!d.system)
		domain_of(getuid());
	if (getrandom(&d.epoch, sizeof(d.epoch), 0) != sizeof(d.epoch))
		d.epoch = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;

	if (d.system && lp && (pid_t)atoi(lp) == getpid() &&
	    getenv("LISTEN_FDS") && atoi(getenv("LISTEN_FDS")) >= 1) {
		d.lfd = 3;		/* socket activation */
		fcntl(3, F_SETFD, FD_CLOEXEC);
		fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK);
	} else {
		if (sock)
			snprintf(d.path, sizeof(d.path), "%s", sock);
		else if (d.system)
			snprintf(d.path, sizeof(d.path),
				 "/run/samepage/samepaged.sock");
		else if (spp_socket_path(d.path, sizeof(d.path)))
			return 1;
		if (!d.system && (err = check_dir(d.path))) {
			fprintf(stderr, "samepaged: %s: %s\n", d.path,
				strerror(-err));
			return 1;
		}
		if (d.system)
			mkdir("/run/samepage", 0755);
		d.lfd = listen_on(d.path, d.system ? 0666 : 0600);
		if (d.lfd == -EADDRINUSE)
			return 0;	/* one runs already: nothing to do */
		if (d.lfd < 0) {
			fprintf(stderr, "samepaged: listening on %s: %s\n",
				d.path, strerror(-d.lfd));
			return 1;
		}
		d.own_path = 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	pfd = calloc(MAX_CLIENTS + 1, sizeof(*pfd));
	if (!pfd)
		return 1;

	while (!d.quit) {
		unsigned n = 0;
		uint64_t t, ms;

		pfd[n++] = (struct pollfd){ d.lfd, POLLIN, 0 };
		for (unsigned i = 0; i < d.ncl; i++)
			pfd[n++] = (struct pollfd){ d.cl[i]->fd, POLLIN, 0 };
		if (poll(pfd, n, hints ? ST_HINT_IDLE_MS / 2 : 1000) < 0 &&
		    errno != EINTR)
			break;
		/* Clients first, from the last: dropping one moves the last
		 * into its place, which was already served. */
		for (unsigned i = n - 1; i >= 1; i--)
			if (pfd[i].revents && i - 1 < d.ncl)
				client_read(i - 1);
		/* The pages this round stored leave our mapping in one call
		 * (one TLB flush for the round, not one per INTERN). */
		for (unsigned k = 0; k < d.ndom; k++)
			if (d.dom[k].st)
				store_flush(d.dom[k].st);
		if (pfd[0].revents & POLLIN)
			for (int k = 0; k < 16; k++)
				client_accept();
		hints = 0;
		ms = now_ms();
		for (unsigned k = 0; k < d.ndom; k++)
			if (d.dom[k].st)
				hints |= store_hints_expire(d.dom[k].st, ms);
		t = now_s();
		if (t != last_reclaim) {
			last_reclaim = t;
			for (unsigned k = 0; k < d.ndom; k++)
				if (d.dom[k].st)
					store_reclaim(d.dom[k].st, d.dom[k].uid,
						      d.dom[k].nuid);
		}
		if (d.ncl)
			idle_since = t;
		else if (d.idle_exit && t - idle_since >= d.idle_exit)
			break;
	}
	if (d.own_path)
		unlink(d.path);
	while (d.ncl)
		client_drop(d.ncl - 1);
	for (unsigned k = 0; k < d.ndom; k++)
		store_free(d.dom[k].st);
	free(pfd);
	return 0;
}
