"""Cluster state in etcd: an embedded server for one machine, leased node registration, watches."""
