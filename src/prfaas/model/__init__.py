"""prfaas.model package."""
