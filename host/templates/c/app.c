/* {{name}}: a kubewasm plugin. */
#include <stdlib.h>

#include "kubewasm.h"

static bool apply(const kw_object *object, kw_action *action, kw_error *error) {
    (void)action; /* KW_ACTION_DEFAULT: the host decides when to look again */
    char *name = kw_json_string(object, "metadata.name");
    if (!name) return kw_fail(error, 0, "the object has no name");
    kw_log(KW_INFO, "reconciling %s", name);
    free(name);
    return true;
}

const kw_plugin kubewasm_plugin = {
    .api_version = "v1",
    .kind = "ConfigMap",
    .label_selector = "example.com/{{name}}=true",
    .apply = apply,
};
