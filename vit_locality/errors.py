"""Errors caused by what the user asked for; entry points print them as one line and exit 2."""


class UserError(Exception):
    """Bad input (config, data directory, workdir): the message says what is wrong and what is
    allowed. Raised before any compute and before anything in the workdir is changed."""


class ConfigError(UserError):
    """A config field has a value that is not allowed."""


class DataError(UserError):
    """The dataset cannot be found or read."""
