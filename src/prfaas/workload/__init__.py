"""prfaas.workload package."""
