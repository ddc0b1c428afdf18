"""Errors caused by what the user asked for; entry points print them as one line and exit 2."""

import errno
import os
import re


class UserError(Exception):
    """Bad input (config, data directory, workdir): the message says what is wrong and what is
    allowed. Raised before any compute and before anything in the workdir is changed."""


class ConfigError(UserError):
    """A config field has a value that is not allowed."""


class DataError(UserError):
    """The dataset cannot be found or read."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of `error`'s message (at most `limit` characters), or its type's
    name when the message is empty: the reason part of a one-line error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__


_NO_SPACE = {errno.ENOSPC: os.strerror(errno.ENOSPC), errno.EDQUOT: os.strerror(errno.EDQUOT)}


def out_of_space(error: BaseException | str) -> str | None:
    """The OS's words ('No space left on device', 'Disk quota exceeded') when `error` is a write
    that failed for lack of space, however a library wrapped it: an OSError, tensorstore's
    ValueError from orbax's background threads ("... [os_error_code='28']"), TensorFlow's
    ResourceExhaustedError from the TensorBoard writer, or a log message that quotes one. None
    for any other error."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return _NO_SPACE[error.errno]
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code and int(code.group(1)) in _NO_SPACE:
        return _NO_SPACE[int(code.group(1))]
    return next((words for words in _NO_SPACE.values() if words in str(error)), None)
