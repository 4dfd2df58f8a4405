/*
 * request.c - lifetime of a proxied request (see request.h for the
 * reference-counting rules).
 */
#include "proxy/request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/hdr.h"
#include "proxy/conntrack.h"
#include "proxy/worker.h"
#include "util/wipe.h"

struct request *request_new(struct worker *w, const char *target)
{
	struct request *rq = calloc(1, sizeof *rq);
	if (!rq)
		return NULL;
	size_t n = strnlen(target, ROUTE_MAX_TARGET + 1);
	rq->target = strndup(target, n); /* a longer target is cut here and refused as too long */
	if (!rq->target) {
		free(rq);
		return NULL;
	}
	rq->magic = REQUEST_MAGIC;
	rq->refs = 1; /* the MHD side's */
	rq->w = w;
	rq->cfg = w->cfg;
	rq->tokens = w->tokens;
	rq->gen = w->gen;
	if (rq->gen != NULL)
		atomic_fetch_add(&rq->gen->refs, 1);
	rq->cl.body_len = -1;
	rq->resp.length = -1;
	return rq;
}

void tok_info_unref(struct tok_info *ti)
{
	if (ti && --ti->refs == 0)
		free(ti);
}

void request_ref(struct request *rq)
{
	rq->refs++;
}

void request_unref(struct request *rq)
{
	if (--rq->refs > 0)
		return;
	pool_ring_put(&rq->w->pool, &rq->cl.up);
	wipe_free(rq->replay.body, rq->replay.len); /* request bodies may carry personal data */
	pool_ring_put(&rq->w->pool, &rq->resp.down);
	free(rq->resp.rh_buf);
	free(rq->resp.rh);
	if (rq->bx && rq->bx_ops)
		rq->bx_ops->free(rq->bx);
	free(rq->rw); /* transparent routes' state: one block (rewrite.c) */
	tok_info_unref(rq->diag.tok);
	free(rq->target);
	if (rq->gen != NULL)
		atomic_fetch_sub(&rq->gen->refs, 1);
	rq->magic = 0;
	free(rq);
}

void request_set_local(struct request *rq, int status, const char *code, const char *title, const char *detail)
{
	size_t n = detail ? strnlen(detail, sizeof rq->local.detail - 1) : 0;
	rq->local.set = true;
	rq->local.status = status;
	rq->local.code = code;
	rq->local.title = title;
	memcpy(rq->local.detail, detail ? detail : "", n);
	rq->local.detail[n] = '\0';
}

const char *request_upstream_header(const struct request *rq, const char *name)
{
	size_t len = strlen(name);
	for (unsigned i = 0; i < rq->resp.n_rh; i++) /* "name\0value\0": the name's length is free */
		if (rq->resp.rh[i].value - rq->resp.rh[i].name == len + 1 &&
		    strncasecmp(rq->resp.rh_buf + rq->resp.rh[i].name, name, len) == 0)
			return rq->resp.rh_buf + rq->resp.rh[i].value;
	return NULL;
}

bool request_client_left(struct request *rq, long long now_ms)
{
	if (now_ms < rq->cl.left_check_ms)
		return false;
	rq->cl.left_check_ms = now_ms + REQUEST_LEFT_CHECK_MS; /* always: the loop sleeps until then */
	if (rq->cl.gone || rq->cl.abandoned)
		return false;
	switch (conntrack_peek(rq->conn)) {
	case CONN_INPUT_END: /* a close, or a half-close still waiting for its answers */
		return !hdr_method_idempotent(rq->method);
	case CONN_INPUT_ERROR:
		return true;
	default:
		return false;
	}
}

long long request_left_check_due(const struct request *rq)
{
	return rq->cl.left_check_ms > 0 ? rq->cl.left_check_ms : 1; /* 0 is "no deadline" to the loop */
}

void request_abandon(struct request *rq)
{
	rq->cl.abandoned = true;
	request_resume(rq);
}

void request_resume(struct request *rq)
{
	if (!rq->cl.suspended || rq->cl.gone)
		return;
	rq->cl.suspended = false;
	MHD_resume_connection(rq->conn);
	rq->w->mhd_dirty = true; /* external mode: MHD must run again (internals.md L-MHD-2) */
}

void request_suspend(struct request *rq)
{
	if (rq->cl.suspended)
		return;
	rq->cl.suspended = true;
	MHD_suspend_connection(rq->conn);
}
