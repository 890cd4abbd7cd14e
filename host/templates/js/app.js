// {{name}}: a kubewasm plugin.

import { DEFAULT, log, reconciler } from '{{sdk}}/js/kubewasm.js';

export const plugin = reconciler({
  watch: { apiVersion: 'v1', kind: 'ConfigMap', labelSelector: 'example.com/{{name}}=true' },

  apply(object) {
    log.info(`reconciling ${object.metadata.name}`);
    return DEFAULT;
  },
});
