"""`prfaas sweep`: grids of scenario fields x policies x seeds through the planner and simulator."""
