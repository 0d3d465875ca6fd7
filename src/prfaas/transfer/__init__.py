"""prfaas.transfer package."""
