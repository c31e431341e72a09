/*
 * clock.h — absolute CLOCK_MONOTONIC deadlines for pthread_cond_timedwait
 * on condition variables created with pthread_condattr_setclock(CLOCK_MONOTONIC)
 * (every timed wait in vecshard uses that clock, so wall-clock jumps never
 * shorten or stretch a wait). Header only; thread-safe.
 */
#ifndef VS_UTIL_CLOCK_H
#define VS_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC now, in milliseconds. */
static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_MONOTONIC now, in microseconds (for timing short steps). */
static inline int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The CLOCK_MONOTONIC time `ms` milliseconds from now. */
static inline struct timespec clock_mono_after_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    return ts;
}

#endif
