"""The one exception type users see: a single sentence naming the problem and the fix."""


class CollabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""
