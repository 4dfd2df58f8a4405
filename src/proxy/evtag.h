/*
 * evtag.h - what an event in a worker's epoll set is: the tag in the low
 * two bits of epoll_event.data.u64, the file descriptor above them. Shared
 * by worker.c, which dispatches on it, and linger.c, which registers its
 * sockets in the same set.
 */
#ifndef S2S_EVTAG_H
#define S2S_EVTAG_H

#include <stdint.h>

enum ev_tag { EV_MHD = 0, EV_WAKE = 1, EV_CURL = 2, EV_LINGER = 3 };
#define EV_DATA(fd, tag) (((uint64_t)(unsigned)(fd) << 2) | (uint64_t)(tag))
#define EV_FD(u64)       ((int)((u64) >> 2))
#define EV_TAG(u64)      ((enum ev_tag)((u64)&3))

#endif
