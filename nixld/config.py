"""nix-ld's environment contract: which loader, which library directories, how loud.

Pure functions of an environment mapping (bytes to bytes); nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Environment = Mapping[bytes, bytes]

DEFAULT_LIBRARY_DIR = b"/run/current-system/sw/share/nix-ld/lib"
DEFAULT_LOADER = DEFAULT_LIBRARY_DIR + b"/ld.so"

LOG_LEVELS = ("error", "warn", "info", "debug", "trace")
DEFAULT_LOG_LEVEL = "warn"


def setting(env: Environment, name: bytes) -> bytes | None:
    """The value of `name`, with an empty value counted as unset (as nix-ld does)."""
    value = env.get(name)
    return value if value else None


def choose_loader(
    env: Environment, system: str | None, override: bytes | None = None
) -> tuple[bytes, str]:
    """The loader to run and where it came from: `--ld`, `NIX_LD_{system}` (as `env` spells it:
    see system_variable), `NIX_LD` or the default."""
    if override:
        return override, "--ld"
    for name in _system_specific(env, b"NIX_LD", system):
        value = setting(env, name)
        if value is not None:
            # Values read from ${stdenv.cc}/nix-support/dynamic-linker end in one newline.
            if value.endswith(b"\n"):
                value = value[:-1]
            if value:
                return value, name.decode()
    return DEFAULT_LOADER, "default"


def source_phrase(source: str, system: str | None = None, generic: str = "NIX_LD", *, why: bool = False) -> str:
    """Where a loader (or, with `generic` "NIX_LD_LIBRARY_PATH", the library directories) came
    from, in the words of every message: "given with --ld", "from NIX_LD", "nix-ld's default",
    "the program's own interpreter"; with `why`, a default also says what was unset."""
    if source == "--ld":
        return "given with --ld"
    if source not in ("default", "interpreter"):
        return f"from {source}"
    phrase = "nix-ld's default" if source == "default" else "the program's own interpreter"
    if not why:
        return phrase
    unset = f"{generic}_{system} and {generic} are unset" if system else f"{generic} is unset"
    return f"{phrase}; {unset}" + (" and nix-ld's default does not exist" if source == "interpreter" else "")


def nix_ld_library_dirs(env: Environment, system: str | None) -> tuple[tuple[bytes, ...], str]:
    """The NIX_LD library directories and the variable they came from (or "default").

    The system-specific variable (as `env` spells it: see system_variable) replaces the generic
    one; the default applies only when neither is set.
    """
    for name in _system_specific(env, b"NIX_LD_LIBRARY_PATH", system):
        value = setting(env, name)
        if value is not None:
            return tuple(split_nix_ld_path(value)), name.decode()
    return (DEFAULT_LIBRARY_DIR,), "default"


def split_nix_ld_path(value: bytes) -> list[bytes]:
    """Split a NIX_LD_LIBRARY_PATH value on `:` or `,` (nix-ld's docs have said both).

    Empty entries are dropped: to glibc an empty entry means the current directory, which
    would let whoever controls the working directory inject libraries.
    """
    return [entry for entry in value.replace(b",", b":").split(b":") if entry]


def split_ld_library_path(value: bytes | None) -> list[bytes]:
    """Split an LD_LIBRARY_PATH value as glibc does (on `:` and `;`), dropping empty entries.

    Empty entries are dropped for the same reason as in split_nix_ld_path: the launch hands
    these directories to the loader, and nixld never adds the working directory implicitly.
    """
    if not value:
        return []
    return [entry for entry in value.replace(b";", b":").split(b":") if entry]


def split_library_arguments(libs: Iterable[bytes]) -> list[bytes]:
    """`-L` values as the loader will read them once joined into its path (`-L a:b` is two
    directories), with empty entries dropped rather than read as the current directory."""
    return [directory for value in libs for directory in split_ld_library_path(value)]


def library_search_path(*groups: Iterable[bytes]) -> tuple[bytes, ...]:
    """Concatenate directory lists in order, keeping the first occurrence of each."""
    seen: dict[bytes, None] = {}
    for group in groups:
        for directory in group:
            seen.setdefault(directory, None)
    return tuple(seen)


def log_level(env: Environment) -> tuple[int, str | None]:
    """The index in LOG_LEVELS of NIX_LD_LOG, and a complaint when its value is not a level."""
    value = setting(env, b"NIX_LD_LOG")
    default = LOG_LEVELS.index(DEFAULT_LOG_LEVEL)
    if value is None:
        return default, None
    name = value.strip().lower()
    for index, level in enumerate(LOG_LEVELS):
        if name == level.encode():
            return index, None
    shown = value.decode(errors="backslashreplace")
    return default, (
        f"NIX_LD_LOG={shown!r} is not one of {', '.join(LOG_LEVELS)}; using {DEFAULT_LOG_LEVEL}"
    )


def system_variables(base: bytes, system: str) -> tuple[bytes, bytes]:
    """The two spellings of `base`'s variable for `system`: nix-ld 2.x's (`NIX_LD_x86_64_linux`)
    and nix-ld 1.x's, the Nix system's own (`NIX_LD_x86_64-linux`)."""
    cpu, _, kernel = system.rpartition("_")
    return base + b"_" + system.encode(), base + b"_" + f"{cpu}-{kernel}".encode()


def system_variable(env: Environment, base: bytes, system: str) -> bytes:
    """The spelling of `base`'s variable for `system` that counts in `env`: nix-ld 2.x's,
    unless `env` has no variable of that name (an empty one counts) and has nix-ld 1.x's."""
    current, old = system_variables(base, system)
    return old if current not in env and old in env else current


def _system_specific(env: Environment, base: bytes, system: str | None) -> tuple[bytes, ...]:
    """`base`'s variables in the order they count for `system`."""
    if system is None:
        return (base,)
    return (system_variable(env, base, system), base)
