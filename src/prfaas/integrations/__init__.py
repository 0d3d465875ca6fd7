"""Adapters that plug prfaas into third-party serving engines (each in its own environment)."""
