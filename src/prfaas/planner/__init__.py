"""prfaas.planner package."""
