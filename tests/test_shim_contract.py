"""One specification, two implementations: the shim's C reading of nix-ld's environment
contract (nixld/shim/contract.c) against nixld run's (nixld/config.py), over arbitrary byte
environments. The C is the shim's own file, compiled here into a library driven through cffi.
"""

from __future__ import annotations

import pytest
from conftest import PROJECT, cffi_library
from environments import CONTRACT_NAMES, names, values
from hypothesis import example, given
from hypothesis import strategies as st

from nixld import config

SHIM_SOURCE = PROJECT / "nixld" / "shim"
SYSTEMS = ["x86_64_linux", "i686_linux"]
SOURCES = {0: "default", 1: "system", 2: "generic"}

DECLARATIONS = """
struct nixld_string { const char *data; size_t length; };
enum nixld_source { NIXLD_FROM_DEFAULT, NIXLD_FROM_SYSTEM_VARIABLE, NIXLD_FROM_GENERIC_VARIABLE };
enum nixld_log_level { NIXLD_LOG_ERROR, NIXLD_LOG_WARN, NIXLD_LOG_INFO, NIXLD_LOG_DEBUG, NIXLD_LOG_TRACE };
struct nixld_settings {
    struct nixld_string loader;
    enum nixld_source loader_source;
    struct nixld_string nix_library_path;
    enum nixld_source nix_library_path_source;
    struct nixld_string ld_library_path;
    enum nixld_log_level log_level;
    struct nixld_string unknown_log_level;
};
void nixld_read_settings(char *const *envp, const char *system, int secure, struct nixld_settings *settings);
size_t nixld_library_path(const struct nixld_settings *settings, char *out, size_t capacity);
"""


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """contract.c as a Python extension: (ffi, lib)."""
    return cffi_library(tmp_path_factory.mktemp("contract"), "_nixld_shim_contract", DECLARATIONS,
                        '#include "contract.h"', [SHIM_SOURCE / "contract.c"])


def read_with_c(contract, entries: list[bytes], system: str, secure: bool = False) -> dict:
    """What the shim reads from `entries`: loader, its source, the joined library path, the
    source of the NIX_LD directories, the log level and whether NIX_LD_LOG named none."""
    ffi, lib = contract
    keep = [ffi.new("char[]", entry) for entry in entries]
    envp = ffi.new("char *[]", [*keep, ffi.NULL])
    settings = ffi.new("struct nixld_settings *")
    lib.nixld_read_settings(envp, system.encode(), int(secure), settings)
    length = lib.nixld_library_path(settings, ffi.NULL, 0)
    buffer = ffi.new("char[]", length + 1)
    written = lib.nixld_library_path(settings, buffer, length)
    return {
        "loader": ffi.unpack(settings.loader.data, settings.loader.length),
        "loader_source": SOURCES[settings.loader_source],
        "library_path": ffi.unpack(buffer, written),
        "nix_dirs_source": SOURCES[settings.nix_library_path_source],
        "log_level": settings.log_level,
        "log_level_unknown": settings.unknown_log_level.data != ffi.NULL,
    }


def read_with_python(entries: list[bytes], system: str) -> dict:
    """The same, from nixld run's planner."""
    from nixld.loader import environment_lookup

    env = environment_lookup(entries)
    loader, loader_source = config.choose_loader(env, system)
    nix_dirs, nix_dirs_source = config.nix_ld_library_dirs(env, system)
    path = config.library_search_path(config.split_ld_library_path(env.get(b"LD_LIBRARY_PATH")), nix_dirs)
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
@example(entries=[b"LD_LIBRARY_PATH=/a;/b:/a", b"NIX_LD_LIBRARY_PATH=/b,/c", b"LD_LIBRARY_PATH=/z"],
         system="x86_64_linux")
@example(entries=[b"NIX_LD_LIBRARY_PATH_i686_linux=:", b"NIX_LD_LIBRARY_PATH=/x"], system="i686_linux")
@example(entries=[b"NIX_LD_LOG= iNfO\n"], system="x86_64_linux")
def test_the_shim_and_nixld_run_read_the_same_loader_and_library_path(contract, entries, system):
    assert read_with_c(contract, entries, system) == read_with_python(entries, system)


@given(entries=entries, system=st.sampled_from(SYSTEMS))
def test_in_secure_mode_the_shim_takes_only_the_log_level_from_the_environment(contract, entries, system):
    secure = read_with_c(contract, entries, system, secure=True)
    assert (secure["loader"], secure["loader_source"]) == (config.DEFAULT_LOADER, "default")
    assert secure["library_path"] == b""
    ordinary = read_with_c(contract, entries, system)
    assert (secure["log_level"], secure["log_level_unknown"]) == (ordinary["log_level"], ordinary["log_level_unknown"])


def test_a_library_path_longer_than_the_buffer_is_known_by_its_length(contract):
    ffi, lib = contract
    keep = [ffi.new("char[]", b"LD_LIBRARY_PATH=/aaaa:/bbbb:/aaaa"), ffi.new("char[]", b"NIX_LD_LIBRARY_PATH=/cccc")]
    settings = ffi.new("struct nixld_settings *")
    lib.nixld_read_settings(ffi.new("char *[]", [*keep, ffi.NULL]), b"x86_64_linux", 0, settings)
    buffer = ffi.new("char[]", 8)
    assert lib.nixld_library_path(settings, buffer, 8) > 8
    assert lib.nixld_library_path(settings, ffi.NULL, 0) >= len(b"/aaaa:/bbbb:/cccc")
    full = ffi.new("char[]", 64)
    assert ffi.unpack(full, lib.nixld_library_path(settings, full, 64)) == b"/aaaa:/bbbb:/cccc"
