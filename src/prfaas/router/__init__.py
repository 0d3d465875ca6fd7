"""prfaas.router package."""
