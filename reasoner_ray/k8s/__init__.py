"""The KubeRay tooling beside the manifests in k8s/: render a kustomize folder (render.py) and validate what it
renders against KubeRay's CRD schemas (schema.py)."""
