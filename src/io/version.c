/*
 * io layer: the versions of jansson and libfyaml, the JSON and YAML
 * libraries that io/ reads inputs and specs with, for `longhaul --version`.
 */
#include "io/input.h"
#include "util/libver.h"

#include <jansson.h>
#include <libfyaml.h>

/* libfyaml's headers carry no version; the Makefile passes pkg-config's. */
#ifndef LH_LIBFYAML_VERSION
#define LH_LIBFYAML_VERSION ""
#endif

void lh_json_lib_version(struct lh_libver *v)
{
#if JANSSON_VERSION_HEX >= 0x020d00
	lh_libver_set(v, "jansson", JANSSON_VERSION, jansson_version_str());
#else
	lh_libver_set(v, "jansson", JANSSON_VERSION, NULL); /* jansson_version_str is 2.13's */
#endif
}

void lh_yaml_lib_version(struct lh_libver *v)
{
	lh_libver_set(v, "libfyaml", LH_LIBFYAML_VERSION, fy_library_version());
}
