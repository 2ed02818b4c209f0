/*
 * util layer: the check of a server's base URL that every place a user
 * gives one shares: `run`'s flags and environment, the spec loader, the
 * daemon's flags and PATCH (see url.h). It sits below io/ and llm/ so that
 * all of them can use it.
 */
#include "util/url.h"

#include <string.h>
#include <strings.h>

static int host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
	       ch == '.' || ch == '_';
}

static int check_port(const char *url, const char *p, const char *end, struct lh_err *e)
{
	long port = 0;
	if (p == end || end - p > 5)
		return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": the port must be a number from 1 to 65535",
				  url);
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return lh_err_set(e, LH_EINPUT,
					  "invalid URL \"%s\": the port must be a number from 1 to 65535", url);
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": the port must be a number from 1 to 65535",
				  url);
	return 0;
}

int lh_url_check_base(const char *url, struct lh_err *e)
{
	const char *sep, *auth, *end, *at, *host, *hend, *p;
	if (!url || !*url)
		return lh_err_set(e, LH_EINPUT, "the URL is empty: expected one such as http://127.0.0.1:11434/v1");
	for (p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": it contains a space or a control character",
					  url);
	sep = strstr(url, "://");
	if (!sep)
		return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": expected http:// or https:// and a host, "
				  "such as http://127.0.0.1:11434/v1", url);
	if (!((sep - url == 4 && strncasecmp(url, "http", 4) == 0) ||
	      (sep - url == 5 && strncasecmp(url, "https", 5) == 0)))
		return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": the scheme is \"%.*s\"; expected http or https",
				  url, (int)(sep - url > 32 ? 32 : sep - url), url);
	auth = sep + 3;
	end = auth + strcspn(auth, "/?#");
	/* User information ("user:password@") is not the host. */
	at = NULL;
	for (p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	/* A password there would be stored with the job's settings, its events
	 * and hints: secrets come from the environment only. */
	if (at && memchr(auth, ':', (size_t)(at - auth)))
		return lh_err_set(e, LH_EINPUT, "the URL holds a password, which would be written to the store and "
				  "the logs: put the API key in an environment variable and name it with --api-key-env "
				  "(api_key_env in a spec)");
	host = at ? at + 1 : auth;
	if (host < end && *host == '[') {
		hend = memchr(host, ']', (size_t)(end - host));
		if (!hend || hend == host + 1)
			return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": an IPv6 host must be written [address]",
					  url);
		for (p = host + 1; p < hend; p++)
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
			      *p == ':' || *p == '.' || *p == '%'))
				return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": the IPv6 host is not valid", url);
		hend++;
	} else {
		for (hend = host; hend < end && *hend != ':'; hend++)
			if (!host_char(*hend))
				return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": the host holds \"%c\"", url, *hend);
		if (hend == host)
			return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": it has no host", url);
	}
	if (hend < end && *hend == ':')
		return check_port(url, hend + 1, end, e);
	if (hend != end)
		return lh_err_set(e, LH_EINPUT, "invalid URL \"%s\": unexpected text after the host", url);
	return 0;
}
