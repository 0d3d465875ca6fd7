"""prfaas.bench package."""
