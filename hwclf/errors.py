"""One exception type for a user's mistake, so the CLI can print one line instead of a traceback."""


class UserError(Exception):
    """Bad input from a user (argument, config, data file). The message is the whole story: one line
    that names the field or file, what is wrong and what is allowed."""
