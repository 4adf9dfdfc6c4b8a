"""The errors a user meets, and how every script reports them: one line naming the path or value and the fix.

A `UsageError` (a missing folder, a bad flag, a file not in the expected layout) ends a script with exit code 2
before anything is written; a `RunError` (divergence, a full disk, a lost worker) stops a run that had started,
with exit code 1 and the latest complete checkpoint named.
"""

import contextlib


class UsageError(Exception):
    """Something the user gave cannot work: flags, folders, files. Exit code 2."""


class DataError(UsageError):
    """A dataset that is missing or not in the ILSVRC2012 layout."""


class CheckpointError(UsageError):
    """A run folder that is missing, empty, unfinished or not the run asked for."""


class RunError(Exception):
    """A run stopped after it started: the loss diverged, a checkpoint could not be written, a worker was lost.
    Exit code 1."""


@contextlib.contextmanager
def reported(parser):
    """Runs a script's main: a UsageError or RunError becomes one line on the standard error and an exit code."""
    try:
        yield
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except RunError as error:
        parser.exit(1, f"\n{parser.prog}: error: {error}\n")
