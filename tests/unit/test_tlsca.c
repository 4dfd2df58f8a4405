/*
 * test_tlsca.c - the shared trust store: the system anchors (a hash
 * directory, or a bundle file when the directory has no hash links) and
 * ca_file's certificates are trusted together, nothing else is, and the
 * store is made only when there is something to put in it. Certificates
 * are made by the openssl command line in a temporary directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "tls/tlsca.h"
#include "t.h"
#include "tdir.h"

/* Run cmd in the scratch directory, quietly. */
static int sh(const char *cmd)
{
	char line[1536];
	snprintf(line, sizeof line, "(%s) >/dev/null 2>&1", cmd);
	return t_sh(line);
}

/* CA name + a leaf "name-leaf.pem" it signed. */
static int make_ca_and_leaf(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.pem "
		 "-days 2 -subj /CN=%s-root -addext basicConstraints=critical,CA:TRUE && "
		 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s-leaf.key -out %s-leaf.csr "
		 "-subj /CN=%s.example && "
		 "openssl x509 -req -in %s-leaf.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days 2 -out %s-leaf.pem",
		 name, name, name, name, name, name, name, name, name, name);
	return sh(cmd);
}

static int setup(void)
{
	if (t_dir_make("s2s-tlsca") < 0)
		return -1;
	if (make_ca_and_leaf("sys") || make_ca_and_leaf("mine") || make_ca_and_leaf("other"))
		return -1;
	/* a system directory with hash links, and one without */
	return sh("mkdir hashed plain && cp sys.pem hashed/ && cp sys.pem plain/ && openssl rehash hashed");
}

/* Does the shared store verify the leaf in file? */
static bool verifies(const char *file)
{
	FILE *f = fopen(file, "r");
	X509 *leaf = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok = false;
	if (f)
		fclose(f);
	if (leaf && ctx && tlsca_store() && X509_STORE_CTX_init(ctx, tlsca_store(), leaf, NULL) == 1)
		ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_free(leaf);
	return ok;
}

/* Is the blob curl's own store gets the PEM of the (first) certificate in file? */
static bool blob_is(const char *file)
{
	const struct curl_blob *b = tlsca_own_store_blob();
	FILE *f = fopen(file, "r");
	X509 *want = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	BIO *mem = b ? BIO_new_mem_buf(b->data, (int)b->len) : NULL;
	X509 *got = mem ? PEM_read_bio_X509(mem, NULL, NULL, NULL) : NULL;
	bool same = want && got && X509_cmp(want, got) == 0 && b->flags == CURL_BLOB_NOCOPY;
	if (f)
		fclose(f);
	X509_free(want);
	X509_free(got);
	BIO_free(mem);
	return same;
}

static void test_hash_directory_and_ca_file_together(void)
{
	char err[256];
	CHECK(tlsca_system_init_from(t_path(0, "hashed"), NULL));
	CHECK(blob_is(t_path(1, "sys.pem")));         /* an anchor the shared store has too */
	CHECK(verifies(t_path(1, "sys-leaf.pem")));   /* found in the directory on first use */
	CHECK(!verifies(t_path(1, "mine-leaf.pem"))); /* not yet trusted */
	CHECK_INT(tlsca_load(t_path(2, "mine.pem"), err, sizeof err), 0);
	CHECK_INT(tlsca_count(), 1);
	CHECK(verifies(t_path(1, "sys-leaf.pem")));
	CHECK(verifies(t_path(1, "mine-leaf.pem")));
	CHECK(!verifies(t_path(1, "other-leaf.pem")));
	tlsca_free();
	CHECK(tlsca_store() == NULL);
	CHECK(tlsca_own_store_blob() == NULL);
	CHECK_INT(tlsca_count(), 0);
	tlsca_free(); /* idempotent */
}

static void test_bundle_when_the_directory_has_no_hash_links(void)
{
	char err[256];
	CHECK(tlsca_system_init_from(t_path(0, "plain"), t_path(1, "sys.pem")));
	CHECK(blob_is(t_path(1, "sys.pem")));
	CHECK(verifies(t_path(2, "sys-leaf.pem")));
	CHECK_INT(tlsca_load(t_path(3, "mine.pem"), err, sizeof err), 0);
	CHECK(verifies(t_path(2, "mine-leaf.pem")));
	CHECK(!verifies(t_path(2, "other-leaf.pem")));
	tlsca_free();
}

static void test_no_system_anchors(void)
{
	char err[256];
	CHECK(!tlsca_system_init_from(t_path(0, "plain"), NULL));
	CHECK(!tlsca_system_init_from(NULL, t_path(1, "missing.pem")));
	CHECK(tlsca_store() == NULL); /* curl's own settings apply */
	CHECK_INT(tlsca_load(t_path(1, "mine.pem"), err, sizeof err), 0);
	CHECK(tlsca_store() != NULL); /* made for ca_file alone */
	CHECK(blob_is(t_path(2, "mine.pem")));
	CHECK(verifies(t_path(2, "mine-leaf.pem")));
	CHECK(!verifies(t_path(2, "sys-leaf.pem")));
	tlsca_free();
}

static void test_bad_ca_file_leaves_the_store(void)
{
	char err[256];
	CHECK(tlsca_system_init_from(t_path(0, "hashed"), NULL));
	CHECK_INT(tlsca_load(t_path(1, "nope.pem"), err, sizeof err), -1);
	CHECK(strstr(err, "nope.pem") != NULL);
	CHECK_INT(tlsca_load(t_path(1, "sys.key"), err, sizeof err), -1); /* a key, not a certificate */
	CHECK(tlsca_store() != NULL);
	CHECK(verifies(t_path(2, "sys-leaf.pem")));
	tlsca_free();
}

int main(void)
{
	if (setup() != 0) {
		printf("FAIL setup: cannot make certificates with openssl in %s\n", t_dir);
		return 1;
	}
	RUN(test_hash_directory_and_ca_file_together);
	RUN(test_bundle_when_the_directory_has_no_hash_links);
	RUN(test_no_system_anchors);
	RUN(test_bad_ca_file_leaves_the_store);
	sh("rm -rf \"$PWD\"");
	return T_DONE();
}
