"""Typed errors; the CLI maps them to exit status 2 and the server to HTTP 4xx."""


class PrfaasError(Exception):
    """Base class of every error the project raises on purpose."""


class UsageError(PrfaasError):
    """Bad input from a user: a flag, a file, a field. The CLI exits with status 2."""


class ConfigError(UsageError):
    """A scenario or deployment file is missing, malformed or names an unknown/invalid field."""


class InfeasibleError(UsageError):
    """The input is well formed but describes something impossible (e.g. zero decode instances)."""


class DeploymentError(PrfaasError):
    """A process of the deployment failed to start or become healthy."""
