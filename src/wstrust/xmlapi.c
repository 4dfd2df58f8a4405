/*
 * xmlapi.c - loads libxml2 with dlopen on first use (see xmlapi.h).
 */
#define XMLAPI_IMPL
#include "wstrust/xmlapi.h"

#include <dlfcn.h>
#include <pthread.h>

/* The soname of Debian 12's libxml2 (package libxml2), the ABI soap.c is
 * compiled against. */
#define XMLAPI_SONAME "libxml2.so.2"

struct xmlapi xmlapi;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_error = "libxml2 not loaded";

static void load(void)
{
	/* Never closed: the table points into it for the life of the process. */
	void *lib = dlopen(XMLAPI_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		load_error = "cannot load " XMLAPI_SONAME " (Debian package libxml2)";
		return;
	}
	/* dlsym returns void *; converting it to a function pointer is what
	 * POSIX requires to work. */
#define XMLAPI_RESOLVE(f)                                                                                              \
	if (!(*(void **)&xmlapi.f = dlsym(lib, #f))) {                                                                 \
		load_error = XMLAPI_SONAME " lacks " #f;                                                               \
		return;                                                                                                \
	}
	XMLAPI_FUNCTIONS(XMLAPI_RESOLVE)
#undef XMLAPI_RESOLVE
	if (!(xmlapi.free_fn = dlsym(lib, "xmlFree")) || !*xmlapi.free_fn) {
		load_error = XMLAPI_SONAME " lacks xmlFree";
		return;
	}
	xmlapi.xmlInitParser();
	load_error = NULL;
}

bool xmlapi_load(const char **why)
{
	pthread_once(&load_once, load);
	if (load_error && why)
		*why = load_error;
	return load_error == NULL;
}
