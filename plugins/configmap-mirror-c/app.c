/* Mirrors every ConfigMap labelled kubewasm.dev/mirror=true into <name>-mirror in the
 * same namespace, and deletes the mirror when the source goes away (the C twin of
 * plugins/configmap-mirror). */
#include <stdlib.h>

#include "kubewasm.h"

static bool mirror_apply(const kw_object *source, kw_action *action, kw_error *error) {
    (void)action; /* the default: the host decides when to look again */
    char *name = kw_json_string(source, "metadata.name");
    if (!name) return kw_fail(error, 0, "source has no name");
    char *namespace_ = kw_json_raw(source, "metadata.namespace");
    char *data = kw_json_raw(source, "data");
    char *mirror_name = kw_format("%s-mirror", name);
    char *quoted_mirror = kw_json_quote(mirror_name), *quoted_source = kw_json_quote(name);
    char *mirror = kw_format(
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":%s,"
        "\"namespace\":%s,\"labels\":{\"kubewasm.dev/mirror-of\":%s}},\"data\":%s}",
        quoted_mirror, namespace_ ? namespace_ : "null", quoted_source, data ? data : "{}");
    char *message = NULL;
    kw_status status = kw_apply(mirror, &message);
    bool ok = status == KW_OK ||
              kw_fail(error, 0, "applying %s: %s: %s", mirror_name, kw_status_name(status),
                      message);
    free(message);
    free(mirror);
    free(quoted_source);
    free(quoted_mirror);
    free(mirror_name);
    free(data);
    free(namespace_);
    free(name);
    return ok;
}

static bool mirror_cleanup(const kw_object *source, kw_action *action, kw_error *error) {
    (void)action;
    char *name = kw_json_string(source, "metadata.name");
    if (!name) return kw_fail(error, 0, "source has no name");
    char *namespace_ = kw_json_string(source, "metadata.namespace");
    char *mirror_name = kw_format("%s-mirror", name);
    kw_ref mirror = {"v1", "ConfigMap", namespace_, mirror_name};
    char *message = NULL;
    kw_status status = kw_delete_if_exists(&mirror, &message);
    bool ok = status == KW_OK ||
              kw_fail(error, 0, "deleting %s: %s: %s", mirror_name, kw_status_name(status),
                      message);
    free(message);
    free(mirror_name);
    free(namespace_);
    free(name);
    return ok;
}

const kw_plugin kubewasm_plugin = {
    .api_version = "v1",
    .kind = "ConfigMap",
    .label_selector = "kubewasm.dev/mirror=true",
    .finalizer = "kubewasm.dev/mirror",
    .apply = mirror_apply,
    .cleanup = mirror_cleanup,
};
