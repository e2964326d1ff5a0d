/* clock.h: the monotonic clock behind every duration libr1 reports (internal). */
#ifndef R1_CLOCK_H
#define R1_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t r1_clock__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
