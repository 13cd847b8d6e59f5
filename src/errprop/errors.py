"""The one exception type users see: a clear message that names the problem."""


class ErrpropError(Exception):
    """A user-facing error (bad config, data, checkpoint or argument).

    The CLI prints its message without a traceback and exits non-zero.
    """
