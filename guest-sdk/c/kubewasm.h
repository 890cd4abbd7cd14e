/*
 * kubewasm C guest SDK: write a reconciler without touching the raw WIT bindings.
 *
 * A plugin defines one `kw_plugin` named `kubewasm_plugin`; the SDK exports it as the
 * `kubewasm:controller/plugin` interface. Kubernetes calls return a `kw_status` and
 * hand back a string the caller frees with free(): the object's JSON on KW_OK, the
 * error message otherwise. JSON comes in through `kw_object` (parsed with jsmn) and
 * goes out as text the plugin writes (kw_format and kw_json_quote help).
 *
 * Built by scripts/build-plugin.sh: wit-bindgen's C bindings, Debian's clang and
 * wasi-libc, then `wasm-tools component new` with the WASI preview 1 adapter.
 */
#ifndef KUBEWASM_H
#define KUBEWASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The outcome of a Kubernetes call: KW_OK, or which WIT `kube.error` case it was. */
typedef enum kw_status {
    KW_OK = 0,
    KW_NOT_FOUND,   /* the object (or its kind) does not exist */
    KW_FORBIDDEN,   /* the grant or the API server's RBAC does not allow the call */
    KW_CONFLICT,    /* changed since read, or another field manager owns a field */
    KW_INVALID,     /* malformed request: bad JSON, a missing field, a rejected value */
    KW_UNAVAILABLE, /* the API server is unreachable or overloaded; retrying may help */
    KW_OTHER,       /* anything else */
} kw_status;

/* The name of a status, such as "not-found", for messages. */
const char *kw_status_name(kw_status status);

/* One Kubernetes object. `namespace_` is NULL for cluster-scoped kinds. */
typedef struct kw_ref {
    const char *api_version;
    const char *kind;
    const char *namespace_;
    const char *name;
} kw_ref;

/* Reads one object: *out is its JSON (or the error message). */
kw_status kw_get(const kw_ref *target, char **out);
/* Lists objects of one kind: *out is a JSON array. NULL namespace: every namespace the
 * plugin may see; NULL selector: every object. */
kw_status kw_list(const char *api_version, const char *kind, const char *namespace_,
                  const char *label_selector, char **out);
/* Server-side apply of `object_json` (apiVersion, kind, metadata.name[, namespace]). */
kw_status kw_apply(const char *object_json, char **out);
/* Merges `status_json` into the target's status subresource. */
kw_status kw_patch_status(const kw_ref *target, const char *status_json, char **out);
/* Creates an object; KW_CONFLICT if it exists. */
kw_status kw_create(const char *object_json, char **out);
/* Deletes an object; KW_NOT_FOUND if it does not exist. *message may be NULL. */
kw_status kw_delete(const kw_ref *target, char **message);
/* Deletes an object, treating one already gone as deleted. */
kw_status kw_delete_if_exists(const kw_ref *target, char **message);

/* How important a log line is. */
typedef enum kw_level { KW_TRACE, KW_DEBUG, KW_INFO, KW_WARN, KW_ERROR } kw_level;
/* Writes one log line, printf-style; the host tags it with the plugin and object. */
void kw_log(kw_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* The two types of Kubernetes Event. */
typedef enum kw_event_type { KW_NORMAL, KW_WARNING } kw_event_type;
/* Records an Event on the object being reconciled. */
void kw_event(kw_event_type type, const char *reason, const char *note);

/* A parsed JSON document (the watched object, or any JSON a call returned). */
typedef struct kw_object {
    const char *json;
    size_t len;
    void *tokens; /* jsmn tokens; private */
    int count;
} kw_object;

/* Parses `json` (kept, not copied). Returns false if it is not valid JSON. */
bool kw_parse(const char *json, size_t len, kw_object *out);
/* Frees what kw_parse allocated (not the JSON text). */
void kw_object_free(kw_object *object);
/* The string at a dotted path ("metadata.name"), unescaped, as a new string; NULL if
 * absent or not a string. */
char *kw_json_string(const kw_object *object, const char *path);
/* The raw JSON text of the value at a dotted path ("data" gives `{"a":"b"}`), as a new
 * string; NULL if absent. */
char *kw_json_raw(const kw_object *object, const char *path);
/* `text` as a quoted, escaped JSON string, as a new string. */
char *kw_json_quote(const char *text);
/* printf into a new string. */
char *kw_format(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* What the host does after a successful apply or cleanup. */
typedef enum kw_action_kind {
    KW_ACTION_DEFAULT = 0,  /* the host decides: again after 40 to 60 minutes */
    KW_ACTION_AWAIT_CHANGE, /* again only when the object changes */
    KW_ACTION_REQUEUE_AFTER /* again after `after_ms` milliseconds */
} kw_action_kind;
typedef struct kw_action {
    kw_action_kind kind;
    uint64_t after_ms;
} kw_action;

/* A failed apply or cleanup: `message` (malloc'd) becomes a Warning Event. */
typedef struct kw_error {
    char *message;
    bool has_retry_after;
    uint64_t retry_after_ms;
} kw_error;

/* Fills *error (retry_after_ms 0: the host's per-object backoff) and returns false, so
 * that a reconcile function can `return kw_fail(error, 0, "...", ...);`. */
bool kw_fail(kw_error *error, uint64_t retry_after_ms, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* apply or cleanup: return true after setting *action (it starts as
 * KW_ACTION_DEFAULT), or kw_fail(...). */
typedef bool (*kw_reconcile_fn)(const kw_object *object, kw_action *action, kw_error *error);

/* The plugin: what it watches, its finalizer, and its two functions. */
typedef struct kw_plugin {
    const char *api_version;    /* of the watched kind: "v1", "apps/v1" */
    const char *kind;           /* the watched kind: "ConfigMap" */
    const char *label_selector; /* NULL: every object of the kind */
    const char *finalizer;      /* NULL: no finalizer, cleanup is never called */
    kw_reconcile_fn apply;
    kw_reconcile_fn cleanup;    /* may be NULL when there is no finalizer */
} kw_plugin;

/* Defined by the plugin. */
extern const kw_plugin kubewasm_plugin;

#ifdef __cplusplus
}
#endif

#endif /* KUBEWASM_H */
