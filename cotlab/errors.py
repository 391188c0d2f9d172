"""The project's user-facing error."""


class CotlabError(Exception):
    """A user-facing error whose message names the fix; the CLI prints it on one line."""
