"""The one exception type a user can cause; its message is a sentence for the user."""


class AudiobookError(Exception):
    """A problem the user can understand and fix (bad file, missing model, bad setting).

    ``str(err)`` is a complete sentence that the page and the command line show as is.
    """
