/*
 * api layer: the libmicrohttpd version, for `longhaul --version`; only
 * api/ includes microhttpd.h.
 */
#include "api/api.h"
#include "util/libver.h"

#include <microhttpd.h>
#include <stdio.h>

void lh_api_lib_version(struct lh_libver *v)
{
	char built[32];
	/* MHD_VERSION is 0xMMmmpp00 with each part written in hex digits that
	 * read as decimal: 0x00097500 is 0.9.75. */
	snprintf(built, sizeof built, "%x.%x.%x", (unsigned)(MHD_VERSION >> 24) & 0xff,
		 (unsigned)(MHD_VERSION >> 16) & 0xff, (unsigned)(MHD_VERSION >> 8) & 0xff);
	lh_libver_set(v, "libmicrohttpd", built, MHD_get_version());
}
