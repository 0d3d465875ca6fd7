"""prfaas.worker package."""
