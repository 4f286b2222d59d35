"""The Kubernetes runtime. Today only its pure half: `render` turns one tenant's stack
instance into the manifests a cluster runs (docs/kubernetes.md). Apply, prune and
watch against an API server come later, behind the `Runtime` protocol."""
