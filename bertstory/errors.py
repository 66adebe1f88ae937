"""User-facing errors: one line that names the problem and the fix, no traceback."""


class BertstoryError(Exception):
    """A problem with the user's input or environment.

    Entry points catch it, print ``error: <message>`` to stderr and exit with code 2.
    The message must name the problem and say what to do about it.
    """
