"""Runtimes realise a tenant's stack. `nodes` places replicas on node daemons; the
Kubernetes driver (later) renders the same templates to cluster objects."""
