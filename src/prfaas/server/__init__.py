"""prfaas.server package."""
