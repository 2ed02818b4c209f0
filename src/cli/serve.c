/*
 * cli layer: `longhaul serve`, the daemon. Composes the store, the engine,
 * the scheduler (engine/scheduler.c: which jobs run) and the HTTP API on one
 * event loop; parses the configuration; hands the API's news to the
 * scheduler on the loop thread.
 *
 * The API thread writes control changes to the store and tells us through
 * notify(), which only queues the news and wakes the loop. Jobs left
 * `running` at shutdown (or after a crash) resume at the next start.
 */
#include "api/api.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "engine/scheduler.h"
#include "engine/run.h"
#include "llm/llm.h"
#include "store/store.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/time.h"
#include "util/url.h"
#include "util/vec.h"

#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:8421"
/* serve's own exit code (docs/cli.md): the API could not listen on its
 * address, usually because the port is taken. EX_OSERR in sysexits.h. */
#define SERVE_EXIT_LISTEN 71

struct serve_conf {
	char host[256];
	int port;
	char *data_dir;
	char *base_url;
	char *key_env;
	long concurrency;
	long max_jobs;
	double grace;
	double connect_t, request_t, first_t;
	double wait_server;   /* seconds a job waits for a server not reached yet */
	int sync_full;
	size_t max_upload;
};

struct notice {
	int64_t job;
	enum lh_job_news cmd;
};

struct daemon {
	struct serve_conf c;
	struct lh_loop *loop;
	struct lh_store *st;
	struct lh_engine *eng;
	struct lh_api *api;
	struct lh_scheduler *sched;
	char *store_path;
	const char *api_key;
	atomic_int ready;
	int stopping;
	int exit_code;

	pthread_mutex_t mu;
	LH_VEC(struct notice) q;
	struct lh_wake *wake;
};

/* ---- systemd notification (sd_notify without libsystemd) ---- */

static void sd_notify_msg(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t len;
	int fd;
	if (!path || !*path || strlen(path) >= sizeof sa.sun_path)
		return;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	close(fd);
}

/* ---- configuration ---- */

static void serve_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul serve [options]\n"
		"\n"
		"Runs the daemon: many jobs at once behind an HTTP API (docs/api.md).\n"
		"\n"
		"options:\n"
		"  --listen HOST:PORT    address of the API (default " DEFAULT_LISTEN "); any address\n"
		"                        but loopback requires a token (LONGHAUL_TOKEN, or generated\n"
		"                        into DATA_DIR/token)\n"
		"  --data-dir DIR        store and uploads (default $LONGHAUL_HOME, else\n"
		"                        $XDG_STATE_HOME/longhaul, else ~/.local/state/longhaul)\n"
		"  --config FILE         settings in YAML or JSON (the same names as these flags,\n"
		"                        with _ for -); flags win\n"
		"  --base-url URL        default LLM server (default $OPENAI_BASE_URL, else\n"
		"                        http://127.0.0.1:11434/v1); a job spec may name its own\n"
		"  --api-key-env NAME    default API key variable (default OPENAI_API_KEY)\n"
		"  --concurrency N       requests in flight over all jobs (default 16, at most 65536;\n"
		"                        the open files limit is raised to match)\n"
		"  --max-jobs N          jobs running at once (default 32); a job of higher\n"
		"                        priority than every running one starts anyway\n"
		"  --grace S             on SIGTERM, seconds for requests in flight (default 30)\n"
		"  --connect-timeout S, --request-timeout S, --first-token-timeout S\n"
		"  --wait-for-server S   a job whose server cannot be reached yet waits up to S\n"
		"                        seconds for it (default 120; 0: it stops early at once)\n"
		"  --sync normal|full    store durability (default normal)\n"
		"  --max-upload-mb N     largest batch upload (default 256)\n"
		"\n"
		"exit codes: 0 stopped cleanly, 2 usage, 6 store error, 7 another serve holds\n"
		"the data directory, 71 could not listen on the address (the port is in use),\n"
		"1 internal error\n");
}

static int set_opt(struct serve_conf *c, const char *name, const char *v)
{
	char *end;
	errno = 0;
	if (!strcmp(name, "listen")) {
		const char *colon = strrchr(v, ':');
		long port;
		if (!colon || colon == v)
			goto bad;
		port = strtol(colon + 1, &end, 10);
		if (*end || port < 0 || port > 65535 || (size_t)(colon - v) >= sizeof c->host)
			goto bad;
		if (v[0] == '[' && colon[-1] == ']')
			snprintf(c->host, sizeof c->host, "%.*s", (int)(colon - v - 2), v + 1);
		else
			snprintf(c->host, sizeof c->host, "%.*s", (int)(colon - v), v);
		c->port = (int)port;
	} else if (!strcmp(name, "data-dir") || !strcmp(name, "data_dir")) {
		lh_free(c->data_dir);
		c->data_dir = lh_xstrdup(v);
	} else if (!strcmp(name, "base-url") || !strcmp(name, "base_url")) {
		lh_free(c->base_url);
		c->base_url = lh_xstrdup(v);
	} else if (!strcmp(name, "api-key-env") || !strcmp(name, "api_key_env")) {
		lh_free(c->key_env);
		c->key_env = lh_xstrdup(v);
	} else if (!strcmp(name, "concurrency") || !strcmp(name, "max-jobs") || !strcmp(name, "max_jobs") ||
		   !strcmp(name, "max-upload-mb") || !strcmp(name, "max_upload_mb")) {
		long x = strtol(v, &end, 10);
		if (errno || end == v || *end || x < 1 || x > 1000000 || (name[0] == 'c' && x > LH_CONCURRENCY_MAX))
			goto bad;
		if (name[0] == 'c')
			c->concurrency = x;
		else if (!strncmp(name, "max-j", 5) || !strncmp(name, "max_j", 5))
			c->max_jobs = x;
		else
			c->max_upload = (size_t)x << 20;
	} else if (!strcmp(name, "grace") || strstr(name, "timeout") || !strcmp(name, "wait-for-server") ||
		   !strcmp(name, "wait_for_server")) {
		double x = strtod(v, &end);
		if (errno || end == v || *end || !isfinite(x) || x < 0)
			goto bad;
		if (!strcmp(name, "grace"))
			c->grace = x;
		else if (strstr(name, "server"))
			c->wait_server = x;
		else if (strstr(name, "connect"))
			c->connect_t = x;
		else if (strstr(name, "first"))
			c->first_t = x;
		else if (strstr(name, "request"))
			c->request_t = x;
		else
			goto unknown;
	} else if (!strcmp(name, "sync")) {
		if (strcmp(v, "normal") && strcmp(v, "full"))
			goto bad;
		c->sync_full = !strcmp(v, "full");
	} else {
		goto unknown;
	}
	return 0;
bad:
	fprintf(stderr, "longhaul: error: %s: invalid value \"%s\" (see longhaul serve --help)\n", name, v);
	return -1;
unknown:
	fprintf(stderr, "longhaul: error: unknown option \"%s\" (see longhaul serve --help)\n", name);
	return -1;
}

/* 1-based line of a scalar node, 0 when unknown. */
static int node_line(struct fy_node *n)
{
	struct fy_token *t = fy_node_get_scalar_token(n);
	const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
	return m ? m->line + 1 : 0;
}

/* Reads a YAML or JSON mapping of option names to scalars. */
static int load_config(struct serve_conf *c, const char *path)
{
	struct fy_document *fyd = fy_document_build_from_file(NULL, path);
	struct fy_node *root;
	struct fy_node_pair *pair;
	void *iter = NULL;
	int rc = 0;
	if (!fyd) {
		fprintf(stderr, "longhaul: error: %s: could not read the config (not YAML or JSON, or unreadable)\n", path);
		return -1;
	}
	root = fy_document_root(fyd);
	if (!root || !fy_node_is_mapping(root)) {
		fprintf(stderr, "longhaul: error: %s: expected a mapping of settings\n", path);
		fy_document_destroy(fyd);
		return -1;
	}
	while (!rc && (pair = fy_node_mapping_iterate(root, &iter)) != NULL) {
		struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
		const char *ks = fy_node_get_scalar0(k), *vs = v ? fy_node_get_scalar0(v) : NULL;
		if (!ks || !vs) {
			fprintf(stderr, "longhaul: error: %s:%d: expected \"name: value\"\n", path,
				node_line(k));
			rc = -1;
			break;
		}
		if (set_opt(c, ks, vs) != 0) {
			fprintf(stderr, "longhaul: error: %s:%d: in the config file\n", path, node_line(k));
			rc = -1;
		}
	}
	fy_document_destroy(fyd);
	return rc;
}

/* 1 when name (without "--") is one of serve's options: an unknown one is
 * reported as unknown, even last on the line where it has no value. */
static int known_opt(const char *name)
{
	static const char *const opts[] = { "listen", "data-dir", "config", "base-url", "api-key-env", "api-key",
					    "concurrency", "max-jobs", "grace", "connect-timeout", "request-timeout",
					    "first-token-timeout", "wait-for-server", "sync", "max-upload-mb", NULL };
	for (size_t i = 0; opts[i]; i++)
		if (!strcmp(opts[i], name))
			return 1;
	return 0;
}

char *cli_default_data_dir(void)
{
	const char *h = getenv("LONGHAUL_HOME"), *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char buf[PATH_MAX];
	if (h && *h)
		return lh_xstrdup(h);
	if (x && *x)
		snprintf(buf, sizeof buf, "%s/longhaul", x);
	else
		snprintf(buf, sizeof buf, "%s/.local/state/longhaul", home && *home ? home : ".");
	return lh_xstrdup(buf);
}

static int parse_args(int argc, char **argv, struct serve_conf *c)
{
	const char *config = NULL;
	memset(c, 0, sizeof *c);
	snprintf(c->host, sizeof c->host, "127.0.0.1");
	c->port = 8421;
	c->concurrency = 16;
	c->max_jobs = 32;
	c->grace = 30;
	c->connect_t = 10;
	c->request_t = 600;
	c->first_t = 60;
	c->wait_server = 120;
	c->max_upload = (size_t)256 << 20;
	/* The config file first, so that flags override it. */
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--config"))
			config = argv[i + 1];
	if (config && load_config(c, config) != 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *v;
		char name[64];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			serve_usage(stdout);
			return 1;
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "longhaul: error: serve takes no arguments, got \"%s\"\n", a);
			return -1;
		}
		eq = strchr(a, '=');
		if (eq) {
			snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
			v = eq + 1;
		} else {
			snprintf(name, sizeof name, "%s", a + 2);
			if (!known_opt(name)) {
				fprintf(stderr, "longhaul: error: unknown option \"--%s\" (see longhaul serve --help)\n",
					name);
				return -1;
			}
			if (i + 1 >= argc) {
				fprintf(stderr, "longhaul: error: --%s needs a value\n", name);
				return -1;
			}
			v = argv[++i];
		}
		if (!strcmp(name, "config"))
			continue;
		if (!strcmp(name, "api-key")) {
			fprintf(stderr, "longhaul: error: --api-key is not accepted; use --api-key-env NAME\n");
			return -1;
		}
		if (set_opt(c, name, v) != 0)
			return -1;
	}
	if (!c->data_dir)
		c->data_dir = cli_default_data_dir();
	if (!c->base_url) {
		const char *env = getenv("OPENAI_BASE_URL");
		c->base_url = lh_xstrdup(env && *env ? env : "http://127.0.0.1:11434/v1");
	}
	if (!c->key_env)
		c->key_env = lh_xstrdup("OPENAI_API_KEY");
	{
		struct lh_err e;
		if (lh_url_check_base(c->base_url, &e) != 0) {
			fprintf(stderr, "longhaul: error: the default server URL \"%s\" (--base-url, or "
					"OPENAI_BASE_URL): %s\n", c->base_url, e.msg);
			return -1;
		}
	}
	return 0;
}

static void conf_release(struct serve_conf *c)
{
	lh_free(c->data_dir);
	lh_free(c->base_url);
	lh_free(c->key_env);
	c->data_dir = c->base_url = c->key_env = NULL;
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof buf)
		return -1;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The token for a non-loopback listener: LONGHAUL_TOKEN, else one made
 * once into DATA_DIR/token (0600). new string. */
static char *load_token(const char *data_dir, int need)
{
	const char *env = getenv("LONGHAUL_TOKEN");
	char path[PATH_MAX], buf[128];
	unsigned char raw[24];
	int fd;
	ssize_t n;
	if (env && *env)
		return lh_xstrdup(env);
	if (!need)
		return NULL;
	snprintf(path, sizeof path, "%s/token", data_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			buf[strcspn(buf, "\r\n")] = '\0';
			if (buf[0])
				return lh_xstrdup(buf);
		}
	}
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(buf + 2 * i, 3, "%02x", raw[i]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf) || write(fd, "\n", 1) != 1) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	fprintf(stderr, "longhaul: generated an API token in %s (mode 0600)\n", path);
	return lh_xstrdup(buf);
}

/* ---- API notices, on the loop thread ---- */

static void api_notify(void *arg, int64_t job, enum lh_job_news cmd)
{
	struct daemon *d = arg;
	struct notice *n;
	pthread_mutex_lock(&d->mu);
	n = lh_vec_push_from(&d->q, 64);
	n->job = job;
	n->cmd = cmd;
	pthread_mutex_unlock(&d->mu);
	lh_wake_signal(d->wake);
}

static int api_ready(void *arg)
{
	struct daemon *d = arg;
	return atomic_load(&d->ready);
}

static void on_notices(struct lh_loop *loop, void *arg)
{
	struct daemon *d = arg;
	struct notice *q;
	size_t n;
	(void)loop;
	pthread_mutex_lock(&d->mu);
	q = d->q.v;
	n = d->q.n;
	lh_vec_init(&d->q);
	pthread_mutex_unlock(&d->mu);
	for (size_t i = 0; i < n; i++)
		lh_scheduler_news(d->sched, q[i].job, q[i].cmd);
	lh_free(q);
}

/* ---- engine callbacks ---- */

static void on_job_end(void *arg, int64_t job, enum lh_job_end how, const char *msg)
{
	struct daemon *d = arg;
	lh_scheduler_job_ended(d->sched, job, how, msg);
}

static void on_job_waiting(void *arg, int64_t job, const char *url, const char *why, double waited)
{
	struct daemon *d = arg;
	lh_scheduler_job_waiting(d->sched, job, url, why, waited);
}

static void on_job_idle(void *arg, int64_t job, int64_t waiting)
{
	struct daemon *d = arg;
	lh_scheduler_job_idle(d->sched, job, waiting);
}

static void on_job_reached(void *arg, int64_t job, const char *url, double waited)
{
	struct daemon *d = arg;
	lh_scheduler_job_reached(d->sched, job, url, waited);
}

static void on_events(void *arg)
{
	struct daemon *d = arg;
	if (d->api)
		lh_api_events_changed(d->api);
}

static void on_commit(void *arg)
{
	struct daemon *d = arg;
	if (d->api)
		lh_api_events_changed(d->api);
}

static void on_fatal(void *arg, const struct lh_err *e)
{
	struct daemon *d = arg;
	lh_log_err(e);
	lh_error("the store failed: shutting down");
	d->exit_code = LH_EXIT_STORE;
	d->stopping = 1;
	lh_scheduler_stop(d->sched);
	atomic_store(&d->ready, 0);
}

static void on_drained(void *arg)
{
	struct daemon *d = arg;
	lh_loop_stop(d->loop);
}

static void on_signal(struct lh_loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;
	(void)loop;
	if (!d->stopping) {
		d->stopping = 1;
		lh_scheduler_stop(d->sched);
		atomic_store(&d->ready, 0);
		sd_notify_msg("STOPPING=1\nSTATUS=stopping: letting requests in flight finish\n");
		lh_info("stopping (%s): letting %zu requests in flight finish (at most %.0fs)",
			signo == SIGINT ? "SIGINT" : "SIGTERM", lh_engine_in_flight(d->eng), d->c.grace);
		lh_engine_shutdown(d->eng, d->c.grace);
	} else {
		lh_engine_abort(d->eng);
	}
}

static void before_sleep(struct lh_loop *loop, void *arg)
{
	struct daemon *d = arg;
	(void)loop;
	if (!d->stopping)
		lh_scheduler_before_sleep(d->sched);
}

int cli_serve(int argc, char **argv)
{
	struct daemon D, *d = &D;
	struct lh_store_opts so;
	struct lh_engine_opts eo;
	struct lh_api_opts ao;
	struct lh_err e;
	char path[PATH_MAX], upload[PATH_MAX], owner[64], status[640];
	char *token = NULL;
	int lockfd, rc;

	memset(d, 0, sizeof *d);
	rc = parse_args(argc, argv, &d->c);
	if (rc) {
		conf_release(&d->c);
		return rc > 0 ? 0 : LH_EXIT_USAGE;
	}
	d->exit_code = 0;
	{
		/* A socket per request in flight, and the API's clients (at most
		 * 1,024): make room now, or say why not. */
		char what[64];
		snprintf(what, sizeof what, "--concurrency %ld", d->c.concurrency);
		if (lh_fd_reserve(d->c.concurrency + 1024 + LH_FD_BASE, what, NULL, &e) != 0) {
			lh_log_err(&e);
			conf_release(&d->c);
			return LH_EXIT_USAGE;
		}
	}
	if (mkdirs(d->c.data_dir) != 0) {
		lh_error("could not create the data directory %s: %s", d->c.data_dir, strerror(errno));
		conf_release(&d->c);
		return LH_EXIT_STORE;
	}
	snprintf(path, sizeof path, "%s/serve.lock", d->c.data_dir);
	lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
		lh_error("another longhaul serve is running on %s; stop it first (or use another --data-dir)",
			 d->c.data_dir);
		if (lockfd >= 0)
			close(lockfd);
		conf_release(&d->c);
		return LH_EXIT_LOCKED;
	}
	{
		char pid[32];
		int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
		if (ftruncate(lockfd, 0) != 0 || write(lockfd, pid, (size_t)n) != n)
			lh_warn("could not write the pid into %s", path);
	}
	if (!lh_api_is_loopback(d->c.host) || getenv("LONGHAUL_TOKEN")) {
		token = load_token(d->c.data_dir, !lh_api_is_loopback(d->c.host));
		if (!token) {
			lh_error("could not read or create the API token in %s/token", d->c.data_dir);
			close(lockfd);
			conf_release(&d->c);
			return LH_EXIT_INTERNAL;
		}
	}
	d->api_key = getenv(d->c.key_env);
	if (d->api_key && !*d->api_key)
		d->api_key = NULL;

	snprintf(path, sizeof path, "%s/longhaul.db", d->c.data_dir);
	snprintf(upload, sizeof upload, "%s/uploads", d->c.data_dir);
	if (mkdirs(upload) != 0) {
		lh_error("could not create %s: %s", upload, strerror(errno));
		close(lockfd);
		lh_free(token);
		conf_release(&d->c);
		return LH_EXIT_STORE;
	}
	d->store_path = lh_xstrdup(path);
	memset(&so, 0, sizeof so);
	so.path = path;
	so.sync_full = d->c.sync_full;
	so.create = 1;
	if ((rc = lh_store_open(&so, &d->st, &e)) != 0) {
		lh_log_err(&e);
		close(lockfd);
		lh_free(token);
		lh_free(d->store_path);
		conf_release(&d->c);
		return rc == LH_EBUSY ? LH_EXIT_LOCKED : LH_EXIT_STORE;
	}

	pthread_mutex_init(&d->mu, NULL);
	d->loop = lh_loop_new(&e);
	if (!d->loop || lh_loop_signal(d->loop, SIGINT, on_signal, d) || lh_loop_signal(d->loop, SIGTERM, on_signal, d)) {
		lh_error("could not set up the event loop");
		return LH_EXIT_INTERNAL;
	}
	signal(SIGPIPE, SIG_IGN);
	d->wake = lh_wake_new(d->loop, on_notices, d, &e);

	memset(&eo, 0, sizeof eo);
	snprintf(owner, sizeof owner, "serve:%ld", (long)getpid());
	eo.concurrency = d->c.concurrency;
	eo.lease_secs = 600;
	eo.owner = owner;
	eo.store_path = path;
	eo.sync_full = d->c.sync_full;
	eo.control = d->st;
	eo.llm.max_connections = d->c.concurrency;
	eo.llm.connect_timeout_ms = (long)(d->c.connect_t * 1000);
	eo.llm.request_timeout_ms = (long)(d->c.request_t * 1000);
	eo.llm.first_token_timeout_ms = (long)(d->c.first_t * 1000);
	eo.llm.max_response_bytes = 16u << 20;
	eo.llm.user_agent = "longhaul/0.1";
	eo.release_all_leases = 1; /* serve.lock: we are the only process on this store */
	eo.arg = d;
	eo.on_job_end = on_job_end;
	eo.on_commit = on_commit;
	eo.on_job_waiting = on_job_waiting;
	eo.on_job_reached = on_job_reached;
	eo.on_job_idle = on_job_idle;
	eo.on_fatal = on_fatal;
	eo.on_drained = on_drained;
	d->eng = lh_engine_new(d->loop, &eo, &e);
	if (!d->wake || !d->eng) {
		lh_log_err(&e);
		return LH_EXIT_STORE;
	}
	if (lh_loop_add_hook(d->loop, before_sleep, d) != 0)
		return LH_EXIT_INTERNAL;
	{
		struct lh_scheduler_opts so2 = {
			.eng = d->eng, .st = d->st, .max_jobs = d->c.max_jobs, .wait_for_server = d->c.wait_server,
			.defaults = { d->c.base_url, d->api_key }, .arg = d, .changed = on_events,
		};
		d->sched = lh_scheduler_new(&so2);
	}

	memset(&ao, 0, sizeof ao);
	ao.host = d->c.host;
	ao.port = d->c.port;
	ao.token = token;
	ao.store_path = path;
	ao.upload_dir = upload;
	ao.max_upload = d->c.max_upload;
	ao.hooks.arg = d;
	ao.hooks.notify = api_notify;
	ao.hooks.ready = api_ready;
	if ((rc = lh_api_start(&ao, &d->api, &e)) != 0) {
		lh_log_err(&e);
		d->exit_code = rc == LH_EUSAGE ? LH_EXIT_USAGE : rc == LH_EBUSY || rc == LH_EIO ? SERVE_EXIT_LISTEN :
										    LH_EXIT_INTERNAL;
		lh_engine_shutdown(d->eng, 0);
		goto out;
	}

	if (lh_scheduler_start(d->sched, &e) != 0)
		lh_log_err(&e);
	atomic_store(&d->ready, 1);
	lh_info("serving on http://%s%s%s:%d (data in %s)", strchr(d->c.host, ':') ? "[" : "", d->c.host,
		strchr(d->c.host, ':') ? "]" : "", lh_api_port(d->api), d->c.data_dir);
	snprintf(status, sizeof status, "READY=1\nSTATUS=serving on %s:%d\nMAINPID=%ld\n", d->c.host,
		 lh_api_port(d->api), (long)getpid());
	sd_notify_msg(status);

	if (lh_loop_run(d->loop) != 0)
		lh_error("the event loop failed: %s", strerror(errno));

	atomic_store(&d->ready, 0);
	lh_api_stop(d->api);
	d->api = NULL;
out:
	lh_engine_free(d->eng);
	lh_loop_remove_hook(d->loop, before_sleep, d);
	lh_wake_free(d->wake);
	lh_loop_free(d->loop);
	lh_store_close(d->st);
	pthread_mutex_destroy(&d->mu);
	lh_vec_release(&d->q);
	lh_scheduler_free(d->sched);
	lh_free(d->store_path);
	conf_release(&d->c);
	lh_free(token);
	if (d->exit_code != SERVE_EXIT_LISTEN)
		lh_info("stopped");
	close(lockfd);
	return d->exit_code;
}
