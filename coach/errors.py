"""Errors a user can act on: each prints as one line, never as a traceback."""


class CoachError(Exception):
    """A problem with the user's input or set-up, with a message that says how to fix it."""


class AudioInputError(CoachError):
    """The recording cannot be read as call audio."""


class ModelError(CoachError):
    """The speech model is missing, corrupt or cannot be fetched."""
