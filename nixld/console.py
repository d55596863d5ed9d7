"""What every `nixld` command writes, and how it reads its arguments: the leaf below them all.

Output is bytes in the end: paths come from os.fsdecode, so a path's bytes, whatever they are,
go out as they were on disk, in any locale (as `ls` prints them), never as an encoding error.
"""

from __future__ import annotations

import errno
import os
import sys

from nixld.errors import OutputError, UsageError

# What a shell shows for a program that SIGPIPE killed (128 + 13, SIGPIPE's number on every
# Linux architecture): how `nixld inspect | head` ends, as `ls | head` does. main() returns it
# rather than dying of the signal: main() is also called in-process (by tests, by Python code),
# where the signal would kill the caller, and the `nixld` console script is only
# `sys.exit(main())`, so no code of nixld's runs only as a command. `$?` and `set -o pipefail`
# show 141 either way; only a parent that asks waitpid() how its child ended can tell the two
# apart (subprocess: returncode 141 rather than -13).
READER_GONE_STATUS = 128 + 13


class ReaderGone(Exception):
    """stdout is a pipe whose reader has left: the end of the output, not an error to report."""


def encode_output(text: str) -> bytes:
    """`text` as the bytes to write: what os.fsdecode made of a path goes back to the path's
    own bytes, and the rest (nixld's own words are ASCII) is unchanged in any encoding."""
    return os.fsencode(text)


def write_output(text: str) -> None:
    """Write `text` to stdout now; raises OutputError when it cannot be written, ReaderGone
    when nobody reads it any more."""
    stream = sys.stdout
    if stream is None:  # how Python shows a descriptor 1 that was closed when it started
        raise OutputError("cannot write the output: standard output is closed")
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # text only, as with a caller's redirect_stdout(io.StringIO())
            stream.write(text)
            stream.flush()
            return
        stream.flush()  # what others wrote through the text layer goes first
        data = memoryview(encode_output(text))
        while data:
            # Unbuffered (python -u, PYTHONUNBUFFERED), the buffer is the file itself, which may
            # take only part: a pipe whose reader has just left takes what fitted and fails on
            # the next write. stream.write would drop the rest without a word.
            written = buffer.write(data)
            if written is None:  # non-blocking, and full
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            data = data[written:]
        # Now rather than at exit, where a failure is only "Exception ignored" and status 120.
        buffer.flush()
    except OSError as error:
        _discard_output(stream)
        if isinstance(error, BrokenPipeError):
            raise ReaderGone from error
        raise OutputError(f"cannot write the output: {error.strerror or error}") from error


def write_error(message: str) -> None:
    """Write `nixld: message` to stderr. A closed or failing stderr loses the message and
    nothing more: the exit status still tells what went wrong."""
    stream = sys.stderr
    try:
        if stream is None:  # fd 2 was closed when Python started
            return
        line = f"nixld: {message}\n"
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # text only, as with a caller's redirect_stderr(io.StringIO())
            stream.write(line)
        else:
            stream.flush()  # what others wrote through the text layer (warnings) goes first
            buffer.write(encode_output(line))
    except (OSError, ValueError):  # ValueError: a stream closed by its owner, in this process
        pass
    settle_stderr()


def settle_stderr() -> None:
    """Flush stderr now, or send it to /dev/null if it fails: Python flushes it again at exit,
    and a failure there makes the exit status 120, whatever main() returned."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.flush()  # the text layer's flush flushes its buffer too
    except (OSError, ValueError):
        _discard_output(stream)


def _discard_output(stream) -> None:
    """Point the stream's descriptor at /dev/null, as the Python docs advise after EPIPE:
    Python flushes the stream again at exit, and a second failure there would print
    "Exception ignored ..." and make the exit status 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no descriptor behind it (a test's stand-in), or none left
        pass


class _HelpShown(Exception):
    """--help was answered: the command is done."""


def argument_parser(command: str, **options):
    """An argparse parser for `nixld COMMAND` whose errors are nixld's one-line usage errors,
    and whose parse_args returns None when it has shown the help (rather than exiting)."""
    import argparse  # start-up time: only the commands other than run use argparse

    def non_empty(value: str) -> str:
        if not value:  # a path or a name: "" is neither
            raise argparse.ArgumentTypeError("needs a non-empty value")
        return value

    class Parser(argparse.ArgumentParser):
        def add_argument(self, *names, **settings):  # every value given is refused when empty
            if settings.get("action", "store") in ("store", "append") and "type" not in settings:
                settings["type"] = non_empty
            return super().add_argument(*names, **settings)

        def error(self, message):  # one line, nixld's usage status
            raise UsageError(f"{command}: {message}")

        def print_help(self, file=None):  # argparse drops write errors, or falls back to stderr
            write_output(self.format_help())

        def exit(self, status=0, message=None):  # only --help gets here: error() raises first
            raise _HelpShown

        def parse_args(self, args=None, namespace=None):
            try:
                return super().parse_args(args, namespace)
            except _HelpShown:
                return None

    return Parser(prog=f"nixld {command}", **options)
