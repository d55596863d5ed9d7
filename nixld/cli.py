"""The `nixld` command: dispatch to the command modules in nixld.commands, each with its own
`main(args)`, and the exit status of what they raise.

Only the command asked for is imported: `nixld run` starts the program within a millisecond or
two of the interpreter.
"""

from __future__ import annotations

import importlib
import sys

from nixld import __version__
from nixld.console import READER_GONE_STATUS, ReaderGone, settle_stderr, write_error, write_output
from nixld.errors import NixLdError, UsageError

USAGE = """\
usage: nixld [--version] [--help] COMMAND [ARG]...

Run unpatched, dynamically linked Linux binaries on NixOS, through the real loader.

commands:
  run          run a foreign program: nixld run [-L DIR]... [--ld PATH] PROGRAM [ARG]...
  inspect      what programs need and where each library resolves, without running them
  find-libs    which directories hold the libraries a program is missing
  wrap         write a file that starts a foreign program as `nixld run` would, for good
  doctor       what the setup is, what would go wrong, and how to fix it
  shim         where nixld's shim is: a program interpreter that starts foreign programs directly
  python-hook  let a Python's extension modules find their libraries in the NIX_LD directories
  demo         show a foreign binary failing, then running through nixld

'nixld COMMAND --help' tells more about a command.
"""

# Each command, and the module of nixld.commands whose main(args) runs it.
COMMANDS = {
    "run": "run",
    "inspect": "inspect",
    "find-libs": "find_libs",
    "wrap": "wrap",
    "doctor": "doctor",
    "shim": "shim",
    "python-hook": "python_hook",
    "demo": "demo",
}


def main(argv: list[str] | None = None) -> int:
    """Run the nixld command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = args[0] if args else None
    try:
        if command is None:
            raise UsageError("no command given")
        if command in ("-h", "--help"):
            write_output(USAGE)
            return 0
        if command in ("-V", "--version"):
            write_output(f"nixld {__version__}\n")
            return 0
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
        module = importlib.import_module(f"nixld.commands.{COMMANDS[command]}")
        return module.main(args[1:])
    except ReaderGone:
        return READER_GONE_STATUS
    except UsageError as error:
        topic = f"nixld {command} --help" if command in COMMANDS else "nixld --help"
        write_error(f"{error.message}; see '{topic}'")
        return error.exit_status
    except NixLdError as error:
        write_error(error.message)
        return error.exit_status
    except KeyboardInterrupt:
        return 130
    finally:
        # The demo's launch report may have left lines that a failing stderr refused.
        settle_stderr()
