"""The error a worker answers a job it cannot do with (the app turns it into a 4xx)."""


class WorkerError(Exception):
    """A job this worker cannot do (wrong role, draining, bad input)."""
