"""prfaas.profiles package."""
