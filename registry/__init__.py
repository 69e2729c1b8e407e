"""The Weft registry: an etcd-backed, Consul-compatible service catalog and its HTTP API."""
