// Mirrors every ConfigMap labelled kubewasm.dev/mirror=true into <name>-mirror in the
// same namespace, and deletes the mirror when the source goes away (the JavaScript
// twin of plugins/configmap-mirror).

import { DEFAULT, kube, reconciler } from '../../guest-sdk/js/kubewasm.js';

export const plugin = reconciler({
  watch: { apiVersion: 'v1', kind: 'ConfigMap', labelSelector: 'kubewasm.dev/mirror=true' },
  finalizer: 'kubewasm.dev/mirror',

  apply(source) {
    const { name, namespace } = source.metadata;
    kube.apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `${name}-mirror`, namespace, labels: { 'kubewasm.dev/mirror-of': name } },
      data: source.data ?? {},
    });
    return DEFAULT;
  },

  cleanup(source) {
    const { name, namespace } = source.metadata;
    kube.deleteIfExists('v1', 'ConfigMap', `${name}-mirror`, namespace);
    return DEFAULT;
  },
});
