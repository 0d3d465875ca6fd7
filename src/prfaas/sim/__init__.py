"""prfaas.sim package."""
