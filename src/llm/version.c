/*
 * llm layer: the libcurl version, for `longhaul --version`; libcurl is
 * the llm layer's library.
 */
#include "llm/llm.h"
#include "util/libver.h"

#include <curl/curl.h>

void lh_llm_lib_version(struct lh_libver *v)
{
	const curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
	lh_libver_set(v, "libcurl", LIBCURL_VERSION, d ? d->version : NULL);
}
