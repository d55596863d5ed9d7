"""One specification, two implementations: the shim's C reading of nix-ld's environment
contract (nixld/shim/contract.c) against nixld run's (nixld/config.py), over arbitrary byte
environments. The C is the shim's own file, compiled into a library (tests/shim_c.py) and run
as built and under the sanitizers.
"""

from __future__ import annotations

import pytest
from environments import CONTRACT_NAMES, names, values
from hypothesis import example, given
from hypothesis import strategies as st

from nixld import config

SYSTEMS = ["x86_64_linux", "i686_linux", "aarch64_linux"]


def read_with_c(library, entries: list[bytes], system: str, secure: bool = False) -> dict:
    """What the shim reads from `entries`: loader, the variable it came from ("default": none),
    the joined library path, the variable of the NIX_LD directories, the log level and whether
    NIX_LD_LOG named none."""
    settings = library.call("read_settings", entries, system, secure)
    return {
        "loader": settings["loader"],
        "loader_source": (settings["loader_variable"] or b"default").decode(),
        "library_path": settings["library_path"],
        "nix_dirs_source": (settings["nix_dirs_variable"] or b"default").decode(),
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
    return {
        "loader": loader,
        "loader_source": loader_source,
        "library_path": b":".join(path),
        "nix_dirs_source": nix_dirs_source,
        "log_level": level,
        "log_level_unknown": complaint is not None,
    }


SPECIAL_VALUES = [b"", b"\n", b"/lib/ld.so\n", b"/lib/ld.so\n\n", b" Info\t", b"TRACE", b"debug\x0b", b"inf",
                  b"\xc4\xb0NFO", b",:;", b"/a::/a,/b;/a"]
entry_names = st.one_of(names, st.sampled_from([*CONTRACT_NAMES, b"NIX_LD_LIBRARY_PATH_", b"NIX_LD_x86_64_linux_",
                                                b"NIX_LD_x86_64-linux_", b"NIX_LD_x86-64-linux", b"NIX_LD_x86_64-Linux",
                                                b"LD_LIBRARY_PAT"]))
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
@example(entries=[b"NIX_LD_x86_64-linux=/old", b"NIX_LD=/g", b"NIX_LD_LIBRARY_PATH_x86_64-linux=/l"],
         system="x86_64_linux")
@example(entries=[b"NIX_LD_i686-linux=/old", b"NIX_LD_i686_linux=/new", b"NIX_LD_LIBRARY_PATH_i686-linux=/o",
                  b"NIX_LD_LIBRARY_PATH_i686_linux=/n"], system="i686_linux")
@example(entries=[b"NIX_LD_aarch64_linux=", b"NIX_LD_aarch64-linux=/old", b"NIX_LD_LIBRARY_PATH_aarch64_linux=",
                  b"NIX_LD_LIBRARY_PATH_aarch64-linux=/o"], system="aarch64_linux")
@example(entries=[b"NIX_LD_x86_64-linux=\n", b"NIX_LD_x86_64-linux=/second", b"NIX_LD=/g"], system="x86_64_linux")
def test_the_shim_and_nixld_run_read_the_same_loader_and_library_path(shim_c_library, entries, system):
    assert read_with_c(shim_c_library, entries, system) == read_with_python(entries, system)


# nix-ld 1.x read the system-specific variables with the Nix system's own spelling
# (NIX_LD_x86_64-linux); 2.x's spelling (NIX_LD_x86_64_linux) wins wherever it is in the
# environment, even empty. Each case: the entries, with {new} and {old} standing for the
# system in either spelling and {other} for another system's old spelling, and what is read:
# the loader and its variable, the library path and the variable of its NIX_LD directories.
DEFAULTS = (config.DEFAULT_LOADER.decode(), "default")
SPELLINGS = {
    "1.x's alone": (
        [b"NIX_LD_{old}=/old/ld.so", b"NIX_LD=/generic/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib",
         b"NIX_LD_LIBRARY_PATH=/generic/lib"],
        ("/old/ld.so", "NIX_LD_{old}", "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "2.x's loader after 1.x's": (
        [b"NIX_LD_{old}=/old/ld.so", b"NIX_LD_{new}=/new/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib"],
        ("/new/ld.so", "NIX_LD_{new}", "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "2.x's library path before 1.x's": (
        [b"NIX_LD_LIBRARY_PATH_{new}=/new/lib", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib", b"NIX_LD_{old}=/old/ld.so"],
        ("/old/ld.so", "NIX_LD_{old}", "/new/lib", "NIX_LD_LIBRARY_PATH_{new}")),
    "2.x's loader empty": (
        [b"NIX_LD_{new}=", b"NIX_LD_{old}=/old/ld.so", b"NIX_LD=/generic/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib"],
        ("/generic/ld.so", "NIX_LD", "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "2.x's library path empty": (
        [b"NIX_LD_LIBRARY_PATH_{new}=", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib", b"NIX_LD_LIBRARY_PATH=/generic/lib",
         b"NIX_LD_{old}=/old/ld.so"],
        ("/old/ld.so", "NIX_LD_{old}", "/generic/lib", "NIX_LD_LIBRARY_PATH")),
    "2.x's loader a newline alone": (
        [b"NIX_LD_{new}=\n", b"NIX_LD_{old}=/old/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib"],
        (*DEFAULTS, "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "1.x's loader empty": (
        [b"NIX_LD_{old}=", b"NIX_LD=/generic/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib"],
        ("/generic/ld.so", "NIX_LD", "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "1.x's twice": (
        [b"NIX_LD_{old}=/first/ld.so", b"NIX_LD_{old}=/second/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/first/lib",
         b"NIX_LD_LIBRARY_PATH_{old}=/second/lib"],
        ("/first/ld.so", "NIX_LD_{old}", "/first/lib", "NIX_LD_LIBRARY_PATH_{old}")),
    "another system's 1.x's loader": (
        [b"NIX_LD_{other}=/other/ld.so", b"NIX_LD_LIBRARY_PATH_{old}=/old/lib"],
        (*DEFAULTS, "/old/lib", "NIX_LD_LIBRARY_PATH_{old}")),
}


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("case", SPELLINGS)
def test_nix_ld_1_x_spellings_are_read_where_2_x_ones_are_not_in_the_environment(shim_c_library, case, system):
    """By the shim's C and by nixld run alike, for x86-64, i686 and aarch64 programs."""
    other = "i686-linux" if system == "x86_64_linux" else "x86_64-linux"
    names = {"new": system, "old": system.replace("_linux", "-linux"), "other": other}
    template, expected = SPELLINGS[case]
    entries = [entry.decode().format(**names).encode() for entry in template]
    loader, loader_source, library_path, nix_dirs_source = (value.format(**names) for value in expected)
    for read in (read_with_c(shim_c_library, entries, system), read_with_python(entries, system)):
        assert (read["loader"], read["loader_source"], read["library_path"], read["nix_dirs_source"]) == (
            loader.encode(), loader_source, library_path.encode(), nix_dirs_source)


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
