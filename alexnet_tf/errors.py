"""The errors a user meets, and how every script reports them: one line naming the path or value and the fix; the
checks of flags every script makes before its work (counts, paths it will write); and the two checks on files from
elsewhere that every reader makes (size, and names that stay inside their folder); and the form of their --help.

A `UsageError` (a missing folder, a bad flag, a file not in the expected layout) ends a script with exit code 2
before anything is written; a `RunError` (divergence, a full disk, a lost worker) stops a run that had started,
with exit code 1 and the latest complete checkpoint named; `Stopped` is a run stopped by Ctrl-C or SIGTERM, its
state saved.
"""

import argparse
import contextlib
import errno
import os
import pathlib
import signal


MAX_SEED = 2**32 - 1  # NumPy's and Keras's seeds are 32-bit


class UsageError(Exception):
    """Something the user gave cannot work: flags, folders, files. Exit code 2."""


class DataError(UsageError):
    """A dataset that is missing or not in the ILSVRC2012 layout."""


class CheckpointError(UsageError):
    """A run folder that is missing, empty, unfinished or not the run asked for."""


class RunError(Exception):
    """A run stopped after it started: the loss diverged, a checkpoint could not be written, a worker was lost.
    Exit code 1."""


class Stopped(Exception):
    """A run stopped as asked by a signal (SIGINT from Ctrl-C, SIGTERM), its state saved. Exit code 128 + the
    signal's number, as a shell reports a process that the signal ended, so that a scheduler sees it unfinished."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's, without the "(default: None)" or "(default: False)" it adds to a flag that has no value until
    given, and without a second default where the help already says what the flag defaults to."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in action.help:
            return action.help
        return super()._get_help_string(action)


@contextlib.contextmanager
def reported(parser):
    """Runs a script's main: a UsageError, RunError or Stopped becomes one line on the standard error and an exit
    code; so does Ctrl-C outside training (exit code 130, the shell's), and a folder or file the system will not let
    us write (read-only, immutable, another user's), wherever the write is."""
    try:
        yield
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except OSError as error:
        if not isinstance(error, PermissionError) and error.errno != errno.EROFS:
            raise
        parser.exit(
            2,
            f"{parser.prog}: error: cannot write {error.filename} ({error.strerror}): make its folder writable, or "
            "write elsewhere\n",
        )
    except RunError as error:
        parser.exit(1, f"\n{parser.prog}: error: {error}\n")
    except Stopped as stop:
        parser.exit(128 + stop.signum, f"\n{parser.prog}: {stop}\n")
    except KeyboardInterrupt:
        parser.exit(128 + signal.SIGINT, f"\n{parser.prog}: interrupted (Ctrl-C)\n")


def check_flag(flag, value, holds, bound):
    """A UsageError naming `--flag value` and the `bound` it must meet, unless it `holds`."""
    if not holds:
        raise UsageError(f"--{flag} {value} cannot work: it must be {bound}")


def check_seed(value, flag="seed"):
    """A UsageError unless `value` is a seed NumPy, Keras and TensorFlow all take: 0 to MAX_SEED."""
    check_flag(flag, value, 0 <= value <= MAX_SEED, f"between 0 and {MAX_SEED}")


def check_counts(args, *names):
    """A UsageError naming the first of the flags `names` (attributes of the parsed `args`) that is given and below
    1: crops, classes, images, shards."""
    for name in names:
        value = getattr(args, name)
        check_flag(name.replace("_", "-"), value, value is None or value >= 1, "at least 1")


def check_writable(path, flag, kind="folder"):
    """A UsageError naming `flag` when something stands where `path`, a `kind` ("folder" or "file") a script will
    write, or one of its parent folders would be: checked before the work, so that none is lost at its end."""
    wanted = os.path.abspath(path)
    if kind == "file" and os.path.isdir(wanted):
        raise UsageError(f"{flag} {path} is a folder: give a file's path, such as {os.path.join(path, 'results.json')}")
    if kind == "folder" and os.path.exists(wanted) and not os.path.isdir(wanted):
        raise UsageError(f"{flag} {path} is a file, not a folder: give another {flag}")
    parent = os.path.dirname(wanted)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path} cannot be written: {parent} is a file, not a folder; give another {flag}")
    folder = wanted if kind == "folder" and os.path.isdir(wanted) else parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"{flag} {path} cannot be written: {folder} is not writable (read-only, immutable or another user's); "
            f"give another {flag}"
        )


def check_size(path, max_bytes, error, fix):
    """Refuses a file far larger than any real one of its kind before it is read whole (`error`: the UsageError to
    raise)."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise error(f"{path} has {size:,} bytes, more than the {max_bytes:,} any real one has: {fix}")


def inside(folder, name, source, error, opened=True):
    """folder/name, when `name`, read from the file `source`, stays inside `folder`: a relative path without `..`,
    and, for a name that will be `opened`, no symlink leading out; `error` (a UsageError) otherwise, before anything
    is opened. (Names only compared, never opened, may pass through a symlinked dataset folder.)"""
    path = os.path.join(folder, name)
    real_folder = os.path.realpath(folder)
    if (
        os.path.isabs(name)
        or ".." in pathlib.PurePath(name).parts
        or (opened and os.path.commonpath([real_folder, os.path.realpath(path)]) != real_folder)
    ):
        raise error(
            f"{source} names {name!r}, which leads outside {folder}: refused; take the file from a source "
            "you trust, or write it again"
        )
    return path
