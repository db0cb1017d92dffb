"""The one exception type users see.

Every error that bad input, a missing file or a corrupt artifact can cause is raised as
:class:`ShortcutlabError` with a message that says what is wrong and what to do; the CLI
prints it without a traceback. Anything else is a bug and keeps its traceback.
"""


class ShortcutlabError(Exception):
    """A problem the user can fix; the message says how."""


class ChecksumError(ShortcutlabError):
    """A file does not match the checksum recorded for it (truncated, corrupt or edited)."""


class TrainingDiverged(ShortcutlabError):
    """A training run diverged (a non-finite loss or output, or easy-val accuracy below
    chance) and was stopped before it wrote a model; the message says what to try."""
