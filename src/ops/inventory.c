/*
 * inventory.c - the usage inventory (inventory.h).
 *
 * File format (text, one line per caller and protocol it used):
 *   # s2s-proxy inventory v1
 *   CALLER<TAB>PROTOCOL<TAB>REQUESTS<TAB>FIRST_SEEN<TAB>LAST_SEEN
 * times as Unix seconds. Unknown protocols and bad lines are skipped on
 * read, so a newer file read by an older proxy loses only what it cannot
 * name. The anonymous caller is "-".
 */
#include "ops/inventory.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "util/log.h"

const char *const inventory_proto_names[PROTO_COUNT] = {
    [PROTO_WEB_API] = "web_api",   [PROTO_SOAP_BRIDGE] = "soap_bridge", [PROTO_STS_FACADE] = "sts_facade",
    [PROTO_BASIC_IN] = "basic_in", [PROTO_ODATA_V4] = "odata_v4",
};

struct inv_row {
	char caller[INVENTORY_NAME_MAX]; /* "" = free */
	unsigned long long n[PROTO_COUNT];
	long long first[PROTO_COUNT], last[PROTO_COUNT]; /* unix s, 0 = never */
	long long seen;                                  /* max of last[] */
};

struct inv_table {
	struct inv_row rows[INVENTORY_MAX_CALLERS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static pthread_t writer;
static atomic_bool running; /* read without the lock on the request path: off = no lock taken */
static bool stopping, dirty;
static char *state_path;
static struct inv_table table; /* under lock */

/* ---- the table ---------------------------------------------------------------- */

/* The row of caller, claimed (or the least recently seen one reused) when new. */
static struct inv_row *row_for(struct inv_table *t, const char *caller)
{
	struct inv_row *free_row = NULL, *oldest = &t->rows[0];
	for (size_t i = 0; i < INVENTORY_MAX_CALLERS; i++) {
		struct inv_row *r = &t->rows[i];
		if (r->caller[0] && strcmp(r->caller, caller) == 0)
			return r;
		if (!r->caller[0] && !free_row)
			free_row = r;
		if (r->seen < oldest->seen)
			oldest = r;
	}
	struct inv_row *r = free_row ? free_row : oldest;
	memset(r, 0, sizeof *r);
	snprintf(r->caller, sizeof r->caller, "%s", caller);
	return r;
}

static void row_add(struct inv_row *r, int p, unsigned long long n, long long first, long long last)
{
	r->n[p] += n;
	if (!r->first[p] || (first && first < r->first[p]))
		r->first[p] = first;
	if (last > r->last[p])
		r->last[p] = last;
	if (last > r->seen)
		r->seen = last;
}

void inventory_note(const char *caller, unsigned protos, long long wall_s)
{
	if (!atomic_load_explicit(&running, memory_order_relaxed))
		return;
	pthread_mutex_lock(&lock);
	if (running && protos) {
		struct inv_row *r = row_for(&table, caller && *caller ? caller : "-");
		for (int p = 0; p < PROTO_COUNT; p++)
			if (protos & (1u << p))
				row_add(r, p, 1, wall_s, wall_s);
		dirty = true;
	}
	pthread_mutex_unlock(&lock);
}

/* ---- the file ------------------------------------------------------------------ */

static int proto_of(const char *name)
{
	for (int p = 0; p < PROTO_COUNT; p++)
		if (strcmp(name, inventory_proto_names[p]) == 0)
			return p;
	return -1;
}

/* Read path into t (zeroed first). A missing file is empty: 0; unreadable: -1. */
static int load(const char *path, struct inv_table *t)
{
	char line[256];
	size_t total = 0;
	FILE *f = fopen(path, "re");

	memset(t, 0, sizeof *t);
	if (!f)
		return errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof line, f) && (total += strlen(line)) <= INVENTORY_MAX_BYTES) {
		char caller[INVENTORY_NAME_MAX], proto[32];
		unsigned long long n;
		long long first, last;
		int p;
		if (line[0] == '#' ||
		    sscanf(line, "%64[^\t]\t%31[^\t]\t%llu\t%lld\t%lld", caller, proto, &n, &first, &last) != 5 ||
		    (p = proto_of(proto)) < 0)
			continue;
		row_add(row_for(t, caller), p, n, first, last);
	}
	fclose(f);
	return 0;
}

/* Write t to path atomically: path.tmp, fsync, rename. */
/* Write t to path through path.tmp and a rename. 0, or the errno of the
 * step that failed (not of the clean-up after it). */
static int save(const char *path, const struct inv_table *t)
{
	char tmp[4096];
	int err = 0;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		err = errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	fprintf(f, "# s2s-proxy inventory v1\n");
	for (size_t i = 0; i < INVENTORY_MAX_CALLERS; i++)
		for (int p = 0; t->rows[i].caller[0] && p < PROTO_COUNT; p++)
			if (t->rows[i].n[p])
				fprintf(f, "%s\t%s\t%llu\t%lld\t%lld\n", t->rows[i].caller, inventory_proto_names[p],
					t->rows[i].n[p], t->rows[i].first[p], t->rows[i].last[p]);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		err = errno;
	if (fclose(f) != 0 && !err)
		err = errno;
	if (!err && rename(tmp, path) != 0)
		err = errno;
	if (err)
		unlink(tmp);
	return err;
}

/* Copy the table out under the lock and write it without it. A failed
 * write leaves the table dirty: the next flush (a second later, or at
 * shutdown) tries again, so no count is lost to a passing failure. The
 * warning is logged when writing starts to fail, not every second. */
static void flush(void)
{
	static struct inv_table snap; /* writer thread or main after the join: one at a time */
	static int failing;           /* the errno of the last failed write, 0 = none */
	pthread_mutex_lock(&lock);
	bool d = dirty;
	if (d)
		snap = table;
	dirty = false;
	pthread_mutex_unlock(&lock);
	int err = d ? save(state_path, &snap) : 0;
	if (err) {
		pthread_mutex_lock(&lock);
		dirty = true;
		pthread_mutex_unlock(&lock);
		if (err != failing)
			log_msg(LOG_WARN, "inventory_write_failed",
				"cannot write inventory_file %s: %s (retried every second)", state_path, strerror(err));
	} else if (d && failing) {
		log_msg(LOG_INFO, "inventory_written", "inventory_file %s written again", state_path);
	}
	if (d)
		failing = err;
}

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&wake, &lock, &ts);
		pthread_mutex_unlock(&lock);
		flush();
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int inventory_start(const char *path)
{
	pthread_condattr_t ca;
	if (!path || running)
		return 0;
	if (!(state_path = strdup(path)))
		return -1;
	if (load(path, &table) < 0) {
		log_msg(LOG_ERROR, "startup_failed", "cannot read inventory_file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (pthread_condattr_init(&ca) != 0)
		goto fail;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&wake, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		goto fail;
	running = true;
	stopping = false;
	if (pthread_create(&writer, NULL, writer_main, NULL) != 0) {
		running = false;
		pthread_cond_destroy(&wake);
		goto fail;
	}
	return 0;
fail:
	free(state_path);
	state_path = NULL;
	return -1;
}

void inventory_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(writer, NULL);
	flush();
	pthread_mutex_lock(&lock);
	running = false;
	pthread_mutex_unlock(&lock);
	pthread_cond_destroy(&wake);
	free(state_path);
	state_path = NULL;
}

/* ---- s2s-proxy inventory ----------------------------------------------------------- */

static void stamp(long long t, char *out, size_t cap)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!t || !gmtime_r(&tt, &tm) || !strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, cap, "-");
}

int inventory_main(int argc, char **argv)
{
	static const struct option longopts[] = {{"config", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0}};
	static struct inv_table t;
	const char *cpath = NULL;
	int opt, rc = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
		if (opt != 'c') {
			fprintf(stderr, "usage: s2s-proxy inventory -c FILE\n");
			return 2;
		}
		cpath = optarg;
	}
	if (!cpath || optind != argc) {
		fprintf(stderr, "usage: s2s-proxy inventory -c FILE\n");
		return 2;
	}
	struct config *cfg = config_load(cpath, stderr);
	if (!cfg)
		return 1;
	if (!cfg->proxy.inventory_file) {
		fprintf(stderr, "%s: no inventory_file in [proxy]\n", cpath);
		goto done;
	}
	if (load(cfg->proxy.inventory_file, &t) < 0) {
		fprintf(stderr, "cannot read %s: %s\n", cfg->proxy.inventory_file, strerror(errno));
		goto done;
	}
	printf("%-24s %-12s %10s  %-20s  %s\n", "CALLER", "PROTOCOL", "REQUESTS", "FIRST_SEEN", "LAST_SEEN");
	for (size_t i = 0; i < INVENTORY_MAX_CALLERS; i++)
		for (int p = 0; t.rows[i].caller[0] && p < PROTO_COUNT; p++) {
			char a[32], b[32];
			if (!t.rows[i].n[p])
				continue;
			stamp(t.rows[i].first[p], a, sizeof a);
			stamp(t.rows[i].last[p], b, sizeof b);
			printf("%-24s %-12s %10llu  %-20s  %s\n", t.rows[i].caller, inventory_proto_names[p],
			       t.rows[i].n[p], a, b);
		}
	rc = 0;
done:
	config_free(cfg);
	return rc;
}
