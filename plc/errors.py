"""Errors shared by every command."""


class UserError(Exception):
    """An error in what the user asked for; ``plc`` prints it as one line and exits with 2."""
