/*
 * util layer: file descriptor limits (see fdlimit.h).
 */
#include "util/fdlimit.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

int lh_fd_reserve(long need, const char *what, long *have, struct lh_err *e)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) != 0)
		return lh_err_set(e, LH_EINTERNAL, "could not read the open files limit: %s", strerror(errno));
	if (have)
		*have = r.rlim_cur == RLIM_INFINITY ? -1 : (long)r.rlim_cur;
	if (r.rlim_cur != RLIM_INFINITY && (rlim_t)need <= r.rlim_cur)
		return 0;
	if (r.rlim_cur == RLIM_INFINITY)
		return 0;
	if (r.rlim_max != RLIM_INFINITY && (rlim_t)need > r.rlim_max)
		return lh_err_set(e, LH_EUSAGE,
				  "%s needs about %ld open files (a socket per request in flight), but this process "
				  "may open at most %llu (the hard limit, ulimit -Hn): lower it, or raise the limit "
				  "(ulimit -Hn, or LimitNOFILE= in a systemd unit)",
				  what, need, (unsigned long long)r.rlim_max);
	r.rlim_cur = (rlim_t)need;
	if (setrlimit(RLIMIT_NOFILE, &r) != 0)
		return lh_err_set(e, LH_EUSAGE, "%s needs about %ld open files and the limit could not be raised: %s",
				  what, need, strerror(errno));
	if (have)
		*have = need;
	return 0;
}
