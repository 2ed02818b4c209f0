/*
 * Clocks. Monotonic time drives timers and rates; wall time is what the
 * store records (seconds since the epoch, as a double).
 */
#ifndef LH_UTIL_TIME_H
#define LH_UTIL_TIME_H

#include <stddef.h>
#include <stdint.h>

double lh_mono(void);      /* seconds, CLOCK_MONOTONIC */
double lh_wall(void);      /* seconds since the epoch, CLOCK_REALTIME */
int64_t lh_mono_ms(void);
/* RFC 3339 UTC with milliseconds: "2026-11-22T04:43:45.123Z". */
void lh_time_iso(double wall, char *out, size_t outsz);
/* "1h02m03s", "4m05s", "12s", or "--" for a negative value. */
void lh_time_human(double secs, char *out, size_t outsz);

#endif
