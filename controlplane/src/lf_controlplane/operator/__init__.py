"""`lf operator`: the kopf operator of the cluster mode (docs/architecture.md, "Cluster mode").

`handlers` (thin kopf handlers) → `specs` (parse the custom resource once, at the edge) → `manifests` (pure
builders of the child objects) → `kube` (the only module that calls the Kubernetes API) and `routestore` (the
LF_ROUTES bucket in NATS); `status` derives the Function's status from its Deployment; `crds` generates the
CustomResourceDefinitions from the same msgspec models that define `function.yaml`.
"""
