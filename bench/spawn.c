/*
 * bench-spawn: runs a command and reports its rusage, for bench/bench.py.
 *
 *   bench-spawn PROG [ARGS...]
 *
 * Writes "pid N\n" to fd 3 as soon as the child exists, then, once it has
 * exited, "exit STATUS utime_s stime_s maxrss_kb\n" (STATUS as from wait4).
 *
 * Why not spawn from Python directly: a process's ru_maxrss keeps the peak
 * RSS of the image it was exec'd from (the kernel folds the old mm's high
 * water mark into it at exec), so a child of the benchmark script reports
 * at least the script's own ~20 MB. This helper is small; its child starts
 * from a ~1 MB image, so ru_maxrss is the command's own peak.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	FILE *out;
	pid_t pid;
	int status;
	struct rusage ru;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-spawn PROG [ARGS...] (reports on fd 3)\n");
		return 2;
	}
	if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0 || !(out = fdopen(3, "w"))) {
		fprintf(stderr, "bench-spawn: fd 3 is not open\n");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		perror("bench-spawn: fork");
		return 1;
	}
	if (pid == 0) {
		execv(argv[1], argv + 1);
		fprintf(stderr, "bench-spawn: %s: %s\n", argv[1], strerror(errno));
		_exit(127);
	}
	fprintf(out, "pid %ld\n", (long)pid);
	fflush(out);
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("bench-spawn: wait4");
			return 1;
		}
	}
	fprintf(out, "exit %d %ld.%06ld %ld.%06ld %ld\n", status, (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
		(long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss);
	fclose(out);
	return 0;
}
