"""Errors the CLI reports to people, each with what to do next, and the exit codes scripts rely on."""

from __future__ import annotations

# Exit codes (documented in `tide --help`):
EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran but the result is not good: not Ready, check failed, diff found
EXIT_USAGE = 2  # bad flags or a user error: unknown object, suspended object, invalid input
EXIT_API = 3  # the cluster could not be reached or refused the request
EXIT_TIMEOUT = 4  # waited --timeout and the object did not become Ready


class CliError(Exception):
    """A failure to show to a person: what happened, then what to do about it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class NotReadyError(CliError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, EXIT_FAILED)


class WaitTimeoutError(CliError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, EXIT_TIMEOUT)
