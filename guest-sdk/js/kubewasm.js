// Write kubewasm reconcilers in JavaScript.
//
//   import { reconciler, kube, AWAIT_CHANGE } from '../../guest-sdk/js/kubewasm.js';
//
//   export const plugin = reconciler({
//     watch: { apiVersion: 'v1', kind: 'ConfigMap', labelSelector: 'app=hello' },
//     apply(obj) { return AWAIT_CHANGE; },
//   });
//
// Objects are plain objects, exactly as the API server serves them. Host calls are
// plain functions (no promises: each returns when the host has answered) and throw a
// KubeError on failure; whatever apply or cleanup throws becomes a failed reconcile (a
// Warning Event on the object, then a retry with backoff).

import * as wit from 'kubewasm:controller/kube@0.1.0';
import { log as witLog } from 'kubewasm:controller/log@0.1.0';
import { publish } from 'kubewasm:controller/events@0.1.0';

/** Do nothing until the object changes. */
export const AWAIT_CHANGE = { tag: 'await-change' };
/** Let the host decide (on success: again in 40-60 minutes). */
export const DEFAULT = { tag: 'default' };
/** Reconcile the object again after `seconds`. */
export function requeueAfter(seconds) {
  return { tag: 'requeue-after', val: BigInt(Math.max(0, Math.round(seconds * 1000))) };
}

/** Throw to fail a reconcile; `retryAfter` (seconds) overrides the backoff. */
export class ReconcileError extends Error {
  constructor(message, retryAfter) {
    super(message);
    this.retryAfter = retryAfter;
  }
}

/** A failed host call; `kind` is not-found, forbidden, conflict, invalid, unavailable or other. */
export class KubeError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.kind = kind;
  }
}

function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (err) {
    const payload = err && err.payload;
    if (payload && typeof payload.tag === 'string') {
      throw new KubeError(payload.tag, payload.val);
    }
    throw err;
  }
}

function ref(apiVersion, kind, name, namespace) {
  return { apiVersion, kind, namespace: namespace ?? undefined, name };
}

/** The Kubernetes API, as far as the plugin's grant allows. */
export const kube = {
  get: (apiVersion, kind, name, namespace) =>
    JSON.parse(call(wit.get, ref(apiVersion, kind, name, namespace))),
  getOpt(apiVersion, kind, name, namespace) {
    try {
      return kube.get(apiVersion, kind, name, namespace);
    } catch (err) {
      if (err instanceof KubeError && err.kind === 'not-found') return null;
      throw err;
    }
  },
  list: (apiVersion, kind, namespace, labelSelector) =>
    JSON.parse(call(wit.list, apiVersion, kind, namespace ?? undefined, labelSelector ?? undefined)),
  apply: (obj) => JSON.parse(call(wit.apply, JSON.stringify(obj))),
  create: (obj) => JSON.parse(call(wit.create, JSON.stringify(obj))),
  patchStatus: (apiVersion, kind, name, status, namespace) =>
    JSON.parse(call(wit.patchStatus, ref(apiVersion, kind, name, namespace), JSON.stringify(status))),
  delete: (apiVersion, kind, name, namespace) =>
    call(wit.delete, ref(apiVersion, kind, name, namespace)),
  deleteIfExists(apiVersion, kind, name, namespace) {
    try {
      kube.delete(apiVersion, kind, name, namespace);
      return true;
    } catch (err) {
      if (err instanceof KubeError && err.kind === 'not-found') return false;
      throw err;
    }
  },
};

/** Log lines, tagged by the host with the plugin and the object. */
export const log = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [level, (message) => witLog(level, String(message))]),
);

/** Kubernetes Events about the object being reconciled. */
export const events = {
  normal: (reason, note) => publish('normal', reason, note),
  warning: (reason, note) => publish('warning', reason, note),
};

function run(method, json) {
  try {
    return method(JSON.parse(json)) ?? DEFAULT;
  } catch (err) {
    const retry = err instanceof ReconcileError && err.retryAfter != null
      ? BigInt(Math.round(err.retryAfter * 1000))
      : undefined;
    throw { message: String(err && err.message ? err.message : err), retryAfterMs: retry };
  }
}

/**
 * The `plugin` export from a reconciler: `{ watch, finalizer?, apply, cleanup? }`,
 * where `watch` is `{ apiVersion, kind, labelSelector? }`.
 */
export function reconciler({ watch, finalizer, apply, cleanup }) {
  return {
    describe: () => ({
      watch: { apiVersion: watch.apiVersion, kind: watch.kind, labelSelector: watch.labelSelector },
      finalizer,
      owns: [],
    }),
    apply: (json) => run(apply, json),
    cleanup: (json) => run(cleanup ?? (() => DEFAULT), json),
  };
}
