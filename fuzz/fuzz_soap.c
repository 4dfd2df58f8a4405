/*
 * fuzz_soap.c - libFuzzer target for the envelope parser and conversions
 * of soap.c.
 *
 * The first input byte picks the entry point (request 1.2 -> 1.1,
 * response 1.1 -> 1.2, RST parser), the rest is the document, handed over
 * in an exactly sized buffer without a NUL so ASan traps any read past
 * len. Besides "never crash", it traps when an invariant breaks: a
 * success without output or with a length that disagrees with the bytes,
 * a converted request still in the SOAP 1.2 namespace or still holding a
 * WS-Security block, a converted response not in SOAP 1.2, output with a
 * DOCTYPE, or extracted strings that are not NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wstrust/soap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
	if (!memchr(s, '\0', cap))
		abort();
}

static void check_out(int r, const char *out, size_t len)
{
	if (r != SOAP_OK) {
		if (out)
			abort(); /* failures leave *out NULL */
		return;
	}
	if (!out || strlen(out) != len || strstr(out, "<!DOCTYPE"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *doc = malloc(size - 1 ? size - 1 : 1);
	if (!doc)
		return 0;
	memcpy(doc, data + 1, size - 1);
	char *out = NULL;
	size_t len = 0;
	switch (data[0] % 3) {
	case 0: {
		struct soap_request_info info;
		int r = soap_request_to_11(doc, size - 1, &out, &len, &info);
		check_out(r, out, len);
		if (r == SOAP_OK && strncmp(out, "<", 1) == 0 && strstr(out, "Envelope xmlns") &&
		    strstr(out, "=\"" SOAP_NS_12 "\"") && !strstr(out, SOAP_NS_11))
			abort(); /* the 1.2 envelope namespace must be gone */
		check_str(info.action, sizeof info.action);
		check_str(info.handle, sizeof info.handle);
		break;
	}
	case 1: {
		bool fault;
		int r = soap_response_to_12(doc, size - 1, "urn:a", "urn:uuid:1", &out, &len, &fault);
		check_out(r, out, len);
		if (r == SOAP_OK && !strstr(out, SOAP_NS_12))
			abort();
		break;
	}
	default: {
		struct soap_rst_info rst;
		soap_parse_rst(doc, size - 1, &rst);
		check_str(rst.username, sizeof rst.username);
		check_str(rst.password, sizeof rst.password);
		check_str(rst.assertion_id, sizeof rst.assertion_id);
		break;
	}
	}
	free(out);
	free(doc);
	return 0;
}
