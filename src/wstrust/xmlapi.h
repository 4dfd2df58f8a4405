/*
 * xmlapi.h - libxml2, loaded the first time it is needed instead of at
 * program start.
 *
 * Why: linking libxml2 maps ICU and libstdc++ into the process and runs
 * their relocations and constructors at every start: 2.4 MiB of resident
 * memory and about 4 ms, for the WS-Trust bridge that most deployments
 * never turn on (docs/performance.md). soap.c, the only user, includes this
 * header after the libxml2 ones; the macros at the end send its calls
 * through the table xmlapi_load fills, so the call sites read as plain
 * libxml2. The types and constants still come from libxml2's headers
 * (pkg-config libxml-2.0); only the link is deferred.
 */
#ifndef S2S_XMLAPI_H
#define S2S_XMLAPI_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdbool.h>

/* Every libxml2 function soap.c calls. A call to one missing here fails
 * the build (libxml2 is not linked), never the run. */
#define XMLAPI_FUNCTIONS(X)                                                                                            \
	X(xmlAddChild)                                                                                                 \
	X(xmlAddPrevSibling)                                                                                           \
	X(xmlBufferContent)                                                                                            \
	X(xmlBufferCreate)                                                                                             \
	X(xmlBufferFree)                                                                                               \
	X(xmlBufferLength)                                                                                             \
	X(xmlCtxtReadMemory)                                                                                           \
	X(xmlDictOwns)                                                                                                 \
	X(xmlDocGetRootElement)                                                                                        \
	X(xmlFreeDoc)                                                                                                  \
	X(xmlFreeNode)                                                                                                 \
	X(xmlFreeParserCtxt)                                                                                           \
	X(xmlGetNsProp)                                                                                                \
	X(xmlGetProp)                                                                                                  \
	X(xmlInitParser)                                                                                               \
	X(xmlNewChild)                                                                                                 \
	X(xmlNewDocNode)                                                                                               \
	X(xmlNewNs)                                                                                                    \
	X(xmlNewParserCtxt)                                                                                            \
	X(xmlNewTextChild)                                                                                             \
	X(xmlNodeAddContent)                                                                                           \
	X(xmlNodeDump)                                                                                                 \
	X(xmlNodeGetContent)                                                                                           \
	X(xmlNodeGetLang)                                                                                              \
	X(xmlNodeSetLang)                                                                                              \
	X(xmlNodeSetName)                                                                                              \
	X(xmlSearchNs)                                                                                                 \
	X(xmlSetGenericErrorFunc)                                                                                      \
	X(xmlSetNs)                                                                                                    \
	X(xmlSetNsProp)                                                                                                \
	X(xmlStopParser)                                                                                               \
	X(xmlStrdup)                                                                                                   \
	X(xmlUnlinkNode)                                                                                               \
	X(xmlUnsetNsProp)

struct xmlapi {
#define XMLAPI_MEMBER(f) __typeof__(f) *f;
	XMLAPI_FUNCTIONS(XMLAPI_MEMBER)
#undef XMLAPI_MEMBER
	xmlFreeFunc *free_fn; /* libxml2's xmlFree is a variable (a hook), not a function */
};

/* Filled by xmlapi_load; read-only afterwards. */
extern struct xmlapi xmlapi;

/* Load libxml2 (once; any thread, any number of calls) and initialise its
 * parser. Returns true when every function above was found. On false,
 * *why (when why is not NULL) is a static message naming the cause. */
bool xmlapi_load(const char **why);

#ifndef XMLAPI_IMPL
#define xmlAddChild            xmlapi.xmlAddChild
#define xmlAddPrevSibling      xmlapi.xmlAddPrevSibling
#define xmlBufferContent       xmlapi.xmlBufferContent
#define xmlBufferCreate        xmlapi.xmlBufferCreate
#define xmlBufferFree          xmlapi.xmlBufferFree
#define xmlBufferLength        xmlapi.xmlBufferLength
#define xmlCtxtReadMemory      xmlapi.xmlCtxtReadMemory
#define xmlDictOwns            xmlapi.xmlDictOwns
#define xmlDocGetRootElement   xmlapi.xmlDocGetRootElement
#define xmlFreeDoc             xmlapi.xmlFreeDoc
#define xmlFreeNode            xmlapi.xmlFreeNode
#define xmlFreeParserCtxt      xmlapi.xmlFreeParserCtxt
#define xmlGetNsProp           xmlapi.xmlGetNsProp
#define xmlGetProp             xmlapi.xmlGetProp
#define xmlInitParser          xmlapi.xmlInitParser
#define xmlNewChild            xmlapi.xmlNewChild
#define xmlNewDocNode          xmlapi.xmlNewDocNode
#define xmlNewNs               xmlapi.xmlNewNs
#define xmlNewParserCtxt       xmlapi.xmlNewParserCtxt
#define xmlNewTextChild        xmlapi.xmlNewTextChild
#define xmlNodeAddContent      xmlapi.xmlNodeAddContent
#define xmlNodeDump            xmlapi.xmlNodeDump
#define xmlNodeGetContent      xmlapi.xmlNodeGetContent
#define xmlNodeGetLang         xmlapi.xmlNodeGetLang
#define xmlNodeSetLang         xmlapi.xmlNodeSetLang
#define xmlNodeSetName         xmlapi.xmlNodeSetName
#define xmlSearchNs            xmlapi.xmlSearchNs
#define xmlSetGenericErrorFunc xmlapi.xmlSetGenericErrorFunc
#define xmlSetNs               xmlapi.xmlSetNs
#define xmlSetNsProp           xmlapi.xmlSetNsProp
#define xmlStopParser          xmlapi.xmlStopParser
#define xmlStrdup              xmlapi.xmlStrdup
#define xmlUnlinkNode          xmlapi.xmlUnlinkNode
#define xmlUnsetNsProp         xmlapi.xmlUnsetNsProp
#define xmlFree                (*xmlapi.free_fn)
#endif

#endif
