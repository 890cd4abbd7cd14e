/* kubewasm C guest SDK: Kubernetes calls, logs, Events and the plugin's exports, over
 * the bindings `wit-bindgen c` generates for the `reconciler` world. */
#include "kubewasm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler.h"

typedef kubewasm_controller_kube_error_t kube_error;

/* A borrowed C string as a WIT string (import parameters are only read). */
static reconciler_string_t borrow(const char *text) {
    reconciler_string_t string;
    reconciler_string_set(&string, text ? text : "");
    return string;
}

static reconciler_option_string_t borrow_option(const char *text) {
    reconciler_option_string_t option = {.is_some = text != NULL};
    if (text) option.val = borrow(text);
    return option;
}

/* Takes a WIT string the bindings allocated and returns it NUL-terminated. */
static char *take_string(reconciler_string_t *string) {
    char *text = malloc(string->len + 1);
    if (!text) abort();
    if (string->len) memcpy(text, string->ptr, string->len);
    text[string->len] = '\0';
    reconciler_string_free(string);
    return text;
}

static void store(char **out, char *text) {
    if (out) {
        *out = text;
    } else {
        free(text);
    }
}

/* Every error case carries a string in the same place. */
static kw_status fail_with(kube_error *error, char **out) {
    kw_status status = (kw_status)(error->tag + 1);
    store(out, take_string(&error->val.not_found));
    return status;
}

static kubewasm_controller_kube_object_ref_t borrow_ref(const kw_ref *target) {
    kubewasm_controller_kube_object_ref_t ref = {
        .api_version = borrow(target->api_version),
        .kind = borrow(target->kind),
        .namespace_ = borrow_option(target->namespace_),
        .name = borrow(target->name),
    };
    return ref;
}

const char *kw_status_name(kw_status status) {
    static const char *const names[] = {"ok", "not-found", "forbidden", "conflict",
                                        "invalid", "unavailable", "other"};
    return status <= KW_OTHER ? names[status] : "unknown";
}

kw_status kw_get(const kw_ref *target, char **out) {
    kubewasm_controller_kube_object_ref_t ref = borrow_ref(target);
    reconciler_string_t result;
    kube_error error;
    if (!kubewasm_controller_kube_get(&ref, &result, &error)) return fail_with(&error, out);
    store(out, take_string(&result));
    return KW_OK;
}

kw_status kw_list(const char *api_version, const char *kind, const char *namespace_,
                  const char *label_selector, char **out) {
    reconciler_string_t version = borrow(api_version), kind_name = borrow(kind);
    reconciler_option_string_t ns = borrow_option(namespace_);
    reconciler_option_string_t selector = borrow_option(label_selector);
    reconciler_string_t result;
    kube_error error;
    if (!kubewasm_controller_kube_list(&version, &kind_name, ns.is_some ? &ns.val : NULL,
                                       selector.is_some ? &selector.val : NULL, &result,
                                       &error))
        return fail_with(&error, out);
    store(out, take_string(&result));
    return KW_OK;
}

/* apply and create: one object's JSON in, the stored object's JSON out. */
typedef bool (*object_call)(reconciler_string_t *object, reconciler_string_t *ret,
                            kube_error *err);

static kw_status call_with_object(object_call call, const char *object_json, char **out) {
    reconciler_string_t object = borrow(object_json), result;
    kube_error error;
    if (!call(&object, &result, &error)) return fail_with(&error, out);
    store(out, take_string(&result));
    return KW_OK;
}

kw_status kw_apply(const char *object_json, char **out) {
    return call_with_object(kubewasm_controller_kube_apply, object_json, out);
}

kw_status kw_patch_status(const kw_ref *target, const char *status_json, char **out) {
    kubewasm_controller_kube_object_ref_t ref = borrow_ref(target);
    reconciler_string_t status = borrow(status_json), result;
    kube_error error;
    if (!kubewasm_controller_kube_patch_status(&ref, &status, &result, &error))
        return fail_with(&error, out);
    store(out, take_string(&result));
    return KW_OK;
}

kw_status kw_create(const char *object_json, char **out) {
    return call_with_object(kubewasm_controller_kube_create, object_json, out);
}

kw_status kw_delete(const kw_ref *target, char **message) {
    kubewasm_controller_kube_object_ref_t ref = borrow_ref(target);
    kube_error error;
    if (!kubewasm_controller_kube_delete(&ref, &error)) return fail_with(&error, message);
    if (message) *message = NULL;
    return KW_OK;
}

kw_status kw_delete_if_exists(const kw_ref *target, char **message) {
    kw_status status = kw_delete(target, message);
    if (status != KW_NOT_FOUND) return status;
    if (message) {
        free(*message);
        *message = NULL;
    }
    return KW_OK;
}

static char *vformat(const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int len = vsnprintf(NULL, 0, format, args);
    char *text = malloc(len < 0 ? 1 : (size_t)len + 1);
    if (!text) abort();
    if (len < 0) {
        text[0] = '\0';
    } else {
        vsnprintf(text, (size_t)len + 1, format, again);
    }
    va_end(again);
    return text;
}

char *kw_format(const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    return text;
}

void kw_log(kw_level level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    reconciler_string_t message = borrow(text);
    kubewasm_controller_log_log((kubewasm_controller_log_level_t)level, &message);
    free(text);
}

void kw_event(kw_event_type type, const char *reason, const char *note) {
    reconciler_string_t reason_string = borrow(reason), note_string = borrow(note);
    kubewasm_controller_events_publish(type == KW_WARNING
                                           ? KUBEWASM_CONTROLLER_EVENTS_EVENT_TYPE_WARNING
                                           : KUBEWASM_CONTROLLER_EVENTS_EVENT_TYPE_NORMAL,
                                       &reason_string, &note_string);
}

bool kw_fail(kw_error *error, uint64_t retry_after_ms, const char *format, ...) {
    va_list args;
    va_start(args, format);
    free(error->message);
    error->message = vformat(format, args);
    va_end(args);
    error->has_retry_after = retry_after_ms > 0;
    error->retry_after_ms = retry_after_ms;
    return false;
}

/* The exports: what the host calls. */

static void dup_option(reconciler_option_string_t *option, const char *text) {
    option->is_some = text != NULL;
    if (text) reconciler_string_dup(&option->val, text);
}

void exports_kubewasm_controller_plugin_describe(
    exports_kubewasm_controller_plugin_description_t *ret) {
    const kw_plugin *plugin = &kubewasm_plugin;
    reconciler_string_dup(&ret->watch.api_version, plugin->api_version);
    reconciler_string_dup(&ret->watch.kind, plugin->kind);
    dup_option(&ret->watch.label_selector, plugin->label_selector);
    dup_option(&ret->finalizer, plugin->finalizer);
    ret->owns.ptr = NULL;
    ret->owns.len = 0;
}

static bool reconcile(kw_reconcile_fn function, reconciler_string_t *object_json,
                      exports_kubewasm_controller_plugin_action_t *ret,
                      exports_kubewasm_controller_plugin_reconcile_error_t *err) {
    char *json = take_string(object_json);
    kw_object object;
    kw_action action = {KW_ACTION_DEFAULT, 0};
    kw_error error = {0};
    bool ok;
    if (!function) {
        ok = kw_fail(&error, 0, "this plugin does not implement the call");
    } else if (!kw_parse(json, strlen(json), &object)) {
        ok = kw_fail(&error, 0, "the host sent an object that is not valid JSON");
    } else {
        ok = function(&object, &action, &error);
        kw_object_free(&object);
    }
    free(json);
    if (ok) {
        switch (action.kind) {
        case KW_ACTION_AWAIT_CHANGE:
            ret->tag = KUBEWASM_CONTROLLER_TYPES_ACTION_AWAIT_CHANGE;
            break;
        case KW_ACTION_REQUEUE_AFTER:
            ret->tag = KUBEWASM_CONTROLLER_TYPES_ACTION_REQUEUE_AFTER;
            ret->val.requeue_after = action.after_ms;
            break;
        default:
            ret->tag = KUBEWASM_CONTROLLER_TYPES_ACTION_DEFAULT;
        }
        free(error.message);
        return true;
    }
    reconciler_string_dup(&err->message, error.message ? error.message : "reconcile failed");
    err->retry_after_ms.is_some = error.has_retry_after;
    err->retry_after_ms.val = error.retry_after_ms;
    free(error.message);
    return false;
}

bool exports_kubewasm_controller_plugin_apply(
    reconciler_string_t *object, exports_kubewasm_controller_plugin_action_t *ret,
    exports_kubewasm_controller_plugin_reconcile_error_t *err) {
    return reconcile(kubewasm_plugin.apply, object, ret, err);
}

bool exports_kubewasm_controller_plugin_cleanup(
    reconciler_string_t *object, exports_kubewasm_controller_plugin_action_t *ret,
    exports_kubewasm_controller_plugin_reconcile_error_t *err) {
    return reconcile(kubewasm_plugin.cleanup, object, ret, err);
}
