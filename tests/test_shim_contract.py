"""One specification, two implementations: the shim's C reading of nix-ld's environment
contract (nixld/shim/contract.c) against nixld run's (nixld/config.py), over arbitrary byte
environments. The C is the shim's own file, compiled into a library (tests/shim_c.py) and run
as built and under the sanitizers.
"""

from __future__ import annotations

from environments import CONTRACT_NAMES, names, values
from hypothesis import example, given
from hypothesis import strategies as st

from nixld import config

SYSTEMS = ["x86_64_linux", "i686_linux"]
SOURCES = {0: "default", 1: "system", 2: "generic"}


def read_with_c(library, entries: list[bytes], system: str, secure: bool = False) -> dict:
    """What the shim reads from `entries`: loader, its source, the joined library path, the
    source of the NIX_LD directories, the log level and whether NIX_LD_LOG named none."""
    settings = library.call("read_settings", entries, system, secure)
    return {
        "loader": settings["loader"],
        "loader_source": SOURCES[settings["loader_source"]],
        "library_path": settings["library_path"],
        "nix_dirs_source": SOURCES[settings["nix_dirs_source"]],
        "log_level": settings["log_level"],
        "log_level_unknown": settings["unknown_log_level"] is not None,
    }


def read_with_python(entries: list[bytes], system: str) -> dict:
    """The same, from nixld run's planner."""
    from nixld.loader import environment_lookup, ld_library_path_entry

    env = environment_lookup(entries)
    loader, loader_source = config.choose_loader(env, system)
    nix_dirs, nix_dirs_source = config.nix_ld_library_dirs(env, system)
    path = config.library_search_path(config.split_ld_library_path(ld_library_path_entry(entries)), nix_dirs)
    level, complaint = config.log_level(env)
    source_kind = {"default": "default", "NIX_LD": "generic", "NIX_LD_LIBRARY_PATH": "generic"}
    return {
        "loader": loader,
        "loader_source": source_kind.get(loader_source, "system"),
        "library_path": b":".join(path),
        "nix_dirs_source": source_kind.get(nix_dirs_source, "system"),
        "log_level": level,
        "log_level_unknown": complaint is not None,
    }


SPECIAL_VALUES = [b"", b"\n", b"/lib/ld.so\n", b"/lib/ld.so\n\n", b" Info\t", b"TRACE", b"debug\x0b", b"inf",
                  b"\xc4\xb0NFO", b",:;", b"/a::/a,/b;/a"]
entry_names = st.one_of(names, st.sampled_from([*CONTRACT_NAMES, b"NIX_LD_i686_linux", b"NIX_LD_LIBRARY_PATH_",
                                                b"NIX_LD_x86_64_linux_", b"LD_LIBRARY_PAT"]))
entry_values = st.one_of(values, st.sampled_from(SPECIAL_VALUES))
entries = st.lists(
    st.one_of(
        st.builds(lambda name, value: name + b"=" + value, entry_names, entry_values),
        # What an environment block may hold besides: no "=", an empty name.
        st.binary(max_size=8).filter(lambda e: b"=" not in e and b"\0" not in e),
        st.builds(lambda value: b"=" + value, entry_values),
    ),
    max_size=14,
)


@given(entries=entries, system=st.sampled_from(SYSTEMS))
@example(entries=[b"NIX_LD_x86_64_linux=\n", b"NIX_LD=/ld.so\n"], system="x86_64_linux")
@example(entries=[b"NIX_LD=/lib/ld.so\n\n"], system="x86_64_linux")
@example(entries=[b"NIX_LD_LIBRARY_PATH=/\xff\xfe:;:/\xff\xfe"], system="x86_64_linux")
@example(entries=[b"LD_LIBRARY_PATH=/a;/b:/a", b"NIX_LD_LIBRARY_PATH=/b,/c", b"LD_LIBRARY_PATH=/z"],
         system="x86_64_linux")
@example(entries=[b"NIX_LD_LIBRARY_PATH_i686_linux=:", b"NIX_LD_LIBRARY_PATH=/x"], system="i686_linux")
@example(entries=[b"NIX_LD_LOG= iNfO\n"], system="x86_64_linux")
def test_the_shim_and_nixld_run_read_the_same_loader_and_library_path(shim_c_library, entries, system):
    assert read_with_c(shim_c_library, entries, system) == read_with_python(entries, system)


@given(entries=entries, system=st.sampled_from(SYSTEMS))
def test_in_secure_mode_the_shim_takes_nothing_from_the_environment(shim_c_library, entries, system):
    """As glibc's loader ignores LD_LIBRARY_PATH and LD_DEBUG for a set-user-ID program, the
    shim ignores nix-ld's variables, NIX_LD_LOG included."""
    assert read_with_c(shim_c_library, entries, system, secure=True) == {
        "loader": config.DEFAULT_LOADER, "loader_source": "default", "library_path": b"", "nix_dirs_source": "default",
        "log_level": config.LOG_LEVELS.index(config.DEFAULT_LOG_LEVEL), "log_level_unknown": False}


def test_a_library_path_longer_than_the_buffer_is_known_by_its_length(shim_c_library):
    """read_settings also asks for the path with an 8-byte buffer and checks that the full
    length comes back: a caller can tell that it did not fit."""
    entries = [b"LD_LIBRARY_PATH=/aaaa:/bbbb:/aaaa", b"NIX_LD_LIBRARY_PATH=/cccc"]
    assert shim_c_library.call("read_settings", entries, "x86_64_linux", False)["library_path"] == b"/aaaa:/bbbb:/cccc"
