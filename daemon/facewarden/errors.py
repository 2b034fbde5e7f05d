"""The one exception type the CLI turns into a clear line and exit 2."""


class UserError(Exception):
    """Something the user can fix: bad input, missing enrollment, a corrupt model, a bad config."""
