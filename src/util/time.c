/*
 * util layer: clocks and time formatting (see time.h).
 */
#include "util/time.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

double lh_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t lh_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double lh_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lh_time_iso(double wall, char *out, size_t outsz)
{
	time_t t = (time_t)floor(wall);
	int ms = (int)((wall - floor(wall)) * 1000.0);
	struct tm tm;
	if (ms > 999)
		ms = 999;
	gmtime_r(&t, &tm);
	snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void lh_time_human(double secs, char *out, size_t outsz)
{
	long s;
	if (secs < 0 || !isfinite(secs)) {
		snprintf(out, outsz, "--");
		return;
	}
	s = (long)(secs + 0.5);
	if (s >= 86400)
		snprintf(out, outsz, "%ldd%02ldh%02ldm", s / 86400, s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(out, outsz, "%ldh%02ldm%02lds", s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(out, outsz, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(out, outsz, "%lds", s);
}
