"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (argument, file, format): the message says what and why."""
