"""Pure routing and rebalancing decisions over frozen cluster views (no I/O, no clock, no torch)."""
