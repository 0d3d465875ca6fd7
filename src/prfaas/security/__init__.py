"""Cluster PKI, TLS contexts and peer identities for every internal connection."""
