/*
 * longhaul-mockllm: an OpenAI-compatible LLM server simulator for longhaul's
 * tests and benchmarks. This file parses the command line, binds the
 * listening sockets, announces the port, starts the workers and turns
 * SIGTERM/SIGINT into a clean exit. docs/mockllm.md is the reference.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mockllm.h"
#include "server.h"
#include "stats.h"
#include "util.h"

#define PROG "longhaul-mockllm"

struct mock_config mock_cfg;

/* The --models list, split in place; main owns it until exit. */
static char *models_copy;

static void usage(FILE *f)
{
	fputs("usage: " PROG " [options]\n"
	      "  --host ADDR            address to listen on (default 127.0.0.1)\n"
	      "  --port N               port, 0 picks a free one (default 0)\n"
	      "  --port-file PATH       also write the port to PATH (atomically)\n"
	      "  --latency-ms F         delay before each chat answer (default 0)\n"
	      "  --jitter-ms F          uniform +/- spread around the latency\n"
	      "  --tokens-per-sec F     streaming pace, 0 sends at once (default 0)\n"
	      "  --fault-429 P          probability of each fault, 0..1\n"
	      "  --fault-500 P\n"
	      "  --fault-503 P\n"
	      "  --fault-hang P\n"
	      "  --fault-reset P\n"
	      "  --fault-truncate P\n"
	      "  --fault-badjson P\n"
	      "  --faults P             P in total, spread evenly over all seven\n"
	      "  --retry-after N        Retry-After seconds on 429 (default 1)\n"
	      "  --seed N               fault generator seed (default: from the clock)\n"
	      "  --require-key KEY      require Authorization: Bearer KEY\n"
	      "  --models a,b,c         known models (default: accept any)\n"
	      "  --context-tokens N     prompt token limit, 0 for none (default 0)\n"
	      "  --threads N            worker threads (default 1)\n"
	      "  --help\n", f);
}

static void die_usage(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, PROG ": could not use %s '%s': %s\n", opt, val, why);
	exit(2);
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
		die_usage(opt, s, "not a number");
	if (v < lo || v > hi) {
		char why[64];

		snprintf(why, sizeof(why), "must be between %g and %g", lo, hi);
		die_usage(opt, s, why);
	}
	return v;
}

static long long parse_int(const char *opt, const char *s, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0)
		die_usage(opt, s, "not an integer");
	if (v < lo || v > hi) {
		char why[80];

		snprintf(why, sizeof(why), "must be between %lld and %lld", lo, hi);
		die_usage(opt, s, why);
	}
	return v;
}

static void parse_models(const char *list)
{
	char *p, *comma;

	free(models_copy);
	models_copy = strdup(list);
	if (models_copy == NULL) {
		fprintf(stderr, PROG ": could not copy --models: out of memory\n");
		exit(1);
	}
	mock_cfg.nmodels = 0;
	/* Split in place at the commas; empty names ("a,,b") are skipped. */
	for (p = models_copy; p != NULL; p = comma) {
		comma = strchr(p, ',');
		if (comma != NULL)
			*comma++ = '\0';
		if (*p == '\0')
			continue;
		if (mock_cfg.nmodels == MAX_MODELS)
			die_usage("--models", list, "more than 256 models");
		mock_cfg.models[mock_cfg.nmodels++] = p;
	}
	if (mock_cfg.nmodels == 0)
		die_usage("--models", list, "no model named");
}

enum {
	OPT_HOST = 256, OPT_PORT, OPT_PORT_FILE, OPT_LATENCY, OPT_JITTER, OPT_TPS,
	OPT_F429, OPT_F500, OPT_F503, OPT_FHANG, OPT_FRESET, OPT_FTRUNC, OPT_FBADJSON,
	OPT_FAULTS, OPT_RETRY_AFTER, OPT_SEED, OPT_KEY, OPT_MODELS, OPT_CONTEXT,
	OPT_THREADS, OPT_HELP,
};

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "port-file", required_argument, NULL, OPT_PORT_FILE },
		{ "latency-ms", required_argument, NULL, OPT_LATENCY },
		{ "jitter-ms", required_argument, NULL, OPT_JITTER },
		{ "tokens-per-sec", required_argument, NULL, OPT_TPS },
		{ "fault-429", required_argument, NULL, OPT_F429 },
		{ "fault-500", required_argument, NULL, OPT_F500 },
		{ "fault-503", required_argument, NULL, OPT_F503 },
		{ "fault-hang", required_argument, NULL, OPT_FHANG },
		{ "fault-reset", required_argument, NULL, OPT_FRESET },
		{ "fault-truncate", required_argument, NULL, OPT_FTRUNC },
		{ "fault-badjson", required_argument, NULL, OPT_FBADJSON },
		{ "faults", required_argument, NULL, OPT_FAULTS },
		{ "retry-after", required_argument, NULL, OPT_RETRY_AFTER },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "require-key", required_argument, NULL, OPT_KEY },
		{ "models", required_argument, NULL, OPT_MODELS },
		{ "context-tokens", required_argument, NULL, OPT_CONTEXT },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	/* --faults is a base that the specific flags override, in any order. */
	double specific[FAULT_COUNT], total = 0;
	bool seeded = false;
	const char *name;
	int c;

	for (int f = 0; f < FAULT_COUNT; f++)
		specific[f] = -1;
	mock_cfg.host = "127.0.0.1";
	mock_cfg.retry_after = 1;
	mock_cfg.threads = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		name = c >= OPT_HOST && c <= OPT_HELP ? opts[c - OPT_HOST].name : "";
		switch (c) {
		case OPT_HOST: mock_cfg.host = optarg; break;
		case OPT_PORT: mock_cfg.port = (int)parse_int("--port", optarg, 0, 65535); break;
		case OPT_PORT_FILE: mock_cfg.port_file = optarg; break;
		case OPT_LATENCY: mock_cfg.latency_ms = parse_double("--latency-ms", optarg, 0, 86400000); break;
		case OPT_JITTER: mock_cfg.jitter_ms = parse_double("--jitter-ms", optarg, 0, 86400000); break;
		case OPT_TPS: mock_cfg.tokens_per_sec = parse_double("--tokens-per-sec", optarg, 0, 1e9); break;
		case OPT_F429: case OPT_F500: case OPT_F503: case OPT_FHANG:
		case OPT_FRESET: case OPT_FTRUNC: case OPT_FBADJSON: {
			char flag[32];

			snprintf(flag, sizeof(flag), "--%s", name);
			specific[c - OPT_F429] = parse_double(flag, optarg, 0, 1);
			break;
		}
		case OPT_FAULTS: total = parse_double("--faults", optarg, 0, 1); break;
		case OPT_RETRY_AFTER: mock_cfg.retry_after = (int)parse_int("--retry-after", optarg, 0, 86400); break;
		case OPT_SEED:
			mock_cfg.seed = (uint64_t)parse_int("--seed", optarg, 0, INT64_MAX);
			seeded = true;
			break;
		case OPT_KEY: mock_cfg.require_key = optarg; break;
		case OPT_MODELS: parse_models(optarg); break;
		case OPT_CONTEXT: mock_cfg.context_tokens = parse_int("--context-tokens", optarg, 0, INT64_MAX); break;
		case OPT_THREADS: mock_cfg.threads = (int)parse_int("--threads", optarg, 1, MAX_THREADS); break;
		case OPT_HELP: usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": could not use argument '%s': no arguments are taken\n", argv[optind]);
		exit(2);
	}
	for (int f = 0; f < FAULT_COUNT; f++)
		mock_cfg.fault[f] = specific[f] >= 0 ? specific[f] : total / FAULT_COUNT;
	if (!seeded) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		mock_cfg.seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
				((uint64_t)getpid() << 32);
	}
}

/* Opens a listening socket on host:port; SO_REUSEPORT lets each worker have its own. */
static int listen_on(const struct addrinfo *ai, int port, bool reuseport)
{
	struct sockaddr_storage ss;
	int one = 1, fd;

	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) < 0 ||
	    listen(fd, 4096) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Writes "PORT\n" to a temporary file and renames it, so readers never see half. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());

	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	if (fprintf(f, "%d\n", port) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		int saved = errno;

		fclose(f);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int saved = errno;

		unlink(tmp);
		errno = saved;
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct worker *workers[MAX_THREADS] = { 0 };
	int fds[MAX_THREADS];
	char host[INET6_ADDRSTRLEN + 2];
	struct rlimit rl;
	sigset_t sigs;
	int port, stop_fd, rc, sig, nthreads, started = 0;
	uint64_t one = 1;

	parse_args(argc, argv);
	nthreads = mock_cfg.threads;

	/* Up to 10,000 connections need more descriptors than the usual soft limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* Signals arrive in main's sigwait; workers inherit the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = getaddrinfo(mock_cfg.host, NULL, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, PROG ": could not resolve --host '%s': %s\n", mock_cfg.host, gai_strerror(rc));
		return 1;
	}
	fds[0] = listen_on(ai, mock_cfg.port, nthreads > 1);
	if (fds[0] < 0) {
		fprintf(stderr, PROG ": could not listen on %s:%d: %s\n", mock_cfg.host,
			mock_cfg.port, strerror(errno));
		return 1;
	}
	port = bound_port(fds[0]);
	for (int i = 1; i < nthreads; i++) {
		fds[i] = listen_on(ai, port, true);
		if (fds[i] < 0) {
			fprintf(stderr, PROG ": could not listen on %s:%d: %s\n", mock_cfg.host,
				port, strerror(errno));
			return 1;
		}
	}
	if (ai->ai_family == AF_INET6) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, a, sizeof(a));
		snprintf(host, sizeof(host), "[%s]", a);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, host, sizeof(host));
	}
	freeaddrinfo(ai);

	if (stats_init() != 0) {
		fprintf(stderr, PROG ": could not set up statistics: out of memory\n");
		return 1;
	}
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stop_fd < 0) {
		fprintf(stderr, PROG ": could not create an eventfd: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		workers[i] = worker_new(i, fds[i], stop_fd, mock_cfg.seed);
		if (workers[i] == NULL) {
			fprintf(stderr, PROG ": could not create worker %d: %s\n", i, strerror(errno));
			return 1;
		}
	}
	/* Announce only once the sockets listen: connects queue in the backlog. */
	printf("listening on http://%s:%d\n", host, port);
	fflush(stdout);
	if (mock_cfg.port_file != NULL && write_port_file(mock_cfg.port_file, port) != 0) {
		fprintf(stderr, PROG ": could not write port file '%s': %s\n",
			mock_cfg.port_file, strerror(errno));
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		rc = worker_start(workers[i]);
		if (rc != 0) {
			fprintf(stderr, PROG ": could not start worker %d: %s\n", i, strerror(rc));
			break;
		}
		started++;
	}
	if (started == nthreads) {
		do
			sig = sigwaitinfo(&sigs, NULL);
		while (sig < 0 && errno == EINTR);
	}
	/* Level-triggered in every worker's epoll set, so one write stops all. */
	if (write(stop_fd, &one, sizeof(one)) < 0)
		fprintf(stderr, PROG ": could not signal workers: %s\n", strerror(errno));
	for (int i = 0; i < nthreads; i++) {
		if (i < started)
			worker_join_free(workers[i]);
		else
			worker_free(workers[i]);
		close(fds[i]);
	}
	close(stop_fd);
	stats_release();
	free(models_copy);
	return started == nthreads ? 0 : 1;
}
