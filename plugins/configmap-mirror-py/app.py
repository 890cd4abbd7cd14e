"""Mirrors every ConfigMap labelled kubewasm.dev/mirror=true into <name>-mirror in the
same namespace, and deletes the mirror when the source goes away (the Python twin of
plugins/configmap-mirror)."""

import kubewasm
from kubewasm import kube


class Mirror(kubewasm.Reconciler):
    watch = kubewasm.Watch("v1", "ConfigMap", label_selector="kubewasm.dev/mirror=true")
    finalizer = "kubewasm.dev/mirror"

    def apply(self, source):
        meta = source["metadata"]
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{meta['name']}-mirror",
                    "namespace": meta.get("namespace"),
                    "labels": {"kubewasm.dev/mirror-of": meta["name"]},
                },
                "data": source.get("data") or {},
            }
        )
        return kubewasm.DEFAULT

    def cleanup(self, source):
        meta = source["metadata"]
        kube.delete_if_exists("v1", "ConfigMap", f"{meta['name']}-mirror", meta.get("namespace"))
        return kubewasm.DEFAULT


Plugin = kubewasm.export(Mirror)
