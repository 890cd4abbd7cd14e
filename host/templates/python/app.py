"""{{name}}: a kubewasm plugin."""

import kubewasm
from kubewasm import log


class App(kubewasm.Reconciler):
    watch = kubewasm.Watch("v1", "ConfigMap", label_selector="example.com/{{name}}=true")

    def apply(self, obj):
        log.info(f"reconciling {obj['metadata']['name']}")
        return kubewasm.DEFAULT


Plugin = kubewasm.export(App)
