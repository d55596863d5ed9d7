"""`nixld python-hook install|remove|status [--python PYTHON]`: nixld's Python hook in a Python
environment, which loads what pip's wheels need from the NIX_LD library directories."""

from __future__ import annotations

import os
import sys

from nixld.console import argument_parser, write_output
from nixld.errors import display

ACTIONS = ("install", "remove", "status")


def main(args: list[str]) -> int:
    """0 when done (status: when the hook is installed), 1 when status finds it is not, or it
    cannot be done; 127, 126 or 2 for a PYTHON not found, not a Python, or a usage error."""
    from nixld import __version__, pyhook
    from nixld.loader import caller_settings, initial_environment

    parser = argument_parser(
        "python-hook",
        description="Put nixld's Python hook into a Python environment (install), take it out (remove), "
                    "or say whether it is there and where it looks (status). The hook is a .pth file and two "
                    "small modules in the environment's site-packages that need nothing but the standard "
                    "library: when an extension module (or a library loaded with ctypes) cannot be loaded "
                    "because a shared library is missing, it loads that library, and what it needs in turn, "
                    "from the NIX_LD library directories by its full path, and tries again. It never sets "
                    "LD_LIBRARY_PATH or any other variable: what the Python starts sees exactly its "
                    "environment.",
        epilog="exit status: 0 when done (for status: the hook is installed), 1 when it is not installed "
               "(status) or cannot be installed or removed, 127 when PYTHON is not found, 126 when it cannot "
               "be started or is not a CPython 3.8 or newer, 2 for a usage error.",
    )
    parser.add_argument("action", metavar="ACTION", choices=ACTIONS, help="install, remove or status")
    parser.add_argument("--python", metavar="PYTHON", default=None,
                        help="the environment's interpreter, e.g. .venv/bin/python (default: the Python "
                             "running nixld)")
    options = parser.parse_args(args)
    if options is None:  # the help was asked for, and shown
        return 0

    env = caller_settings(initial_environment())
    python = os.fsencode(options.python if options.python is not None else sys.executable)
    facts = pyhook.describe_python(python, env)
    sources = pyhook.hook_sources()
    state = pyhook.hook_state(facts.site_packages, facts.cache_tag, sources)
    site = display(facts.site_packages)
    if options.action == "install":
        pyhook.perform(pyhook.plan_install(facts, state, sources, __version__), facts)
        verb = "updated" if state.installed else "installed"
        write_output(f"{site}: nixld's Python hook {verb} for {display(facts.python)} ({_release(facts)}); "
                     f"when a library is missing, it looks in {_where(facts, env)}\n")
        return 0
    if options.action == "remove":
        plan = pyhook.plan_remove(facts, state, sources)
        pyhook.perform(plan, facts)
        if plan.removes:
            removed = [name for name in plan.removes if not name.endswith(".pyc")]
            write_output(f"{site}: nixld's Python hook removed ({', '.join(removed)}, and the .pyc files)\n")
        else:
            write_output(f"{site}: nixld's Python hook is not installed; nothing to remove\n")
        return 0
    write_output(render_status(facts, state, env, __version__))
    return 0 if state.installed else 1


def render_status(facts, state, env, version: str) -> str:
    """What `status` says: whether the hook is there, in which state, and where it looks."""
    from nixld import pyhook

    site = display(facts.site_packages)
    python = f"{display(facts.python)} ({_release(facts)})"
    if state.installed:
        which = "this nixld's" if state.ours and state.version == version else f"from nixld {state.version}"
        active = "loaded at start-up" if facts.hook_active else "installed but not loaded at start-up"
        lines = [f"{site}: nixld's Python hook is installed ({which}), for {python}; {active}"]
        if not state.ours or state.version != version:
            lines.append(f"  `nixld python-hook install --python {display(facts.python)}` puts this nixld's in its place")
        missing = [name for name in state.modules if name not in state.compiled]
        if missing:
            lines.append(f"  not compiled for this Python: {', '.join(missing)}, so it is compiled at every start; "
                         "install again")
        lines.append(f"  when a library is missing, it looks in {_where(facts, env)}")
    elif state.pth or state.modules:
        present = ([pyhook.PTH_FILE] if state.pth else []) + list(state.modules)
        lines = [f"{site}: nixld's Python hook is not installed, but part of it is there ({', '.join(present)}); "
                 f"install or remove it again"]
    else:
        lines = [f"{site}: nixld's Python hook is not installed, for {python}",
                 f"  `nixld python-hook install --python {display(facts.python)}` installs it; it would look in "
                 f"{_where(facts, env)}"]
    return "\n".join(lines) + "\n"


def _release(facts) -> str:
    return "CPython " + ".".join(map(str, facts.version))


def _where(facts, env) -> str:
    """The directories the hook would search, and where they came from, in a few words."""
    from nixld import config, pyhook

    directories, source, system = pyhook.search_directories(facts, env)
    origin = config.source_phrase(source, system, "NIX_LD_LIBRARY_PATH", why=True)
    if not directories:
        return f"no directory ({source} names none)"
    return f"{', '.join(display(directory) for directory in directories)} ({origin})"
