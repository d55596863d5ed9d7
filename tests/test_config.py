"""nix-ld's environment contract, one rule at a time."""

from __future__ import annotations

import pytest

from nixld import config

DEFAULT_LOADER = b"/run/current-system/sw/share/nix-ld/lib/ld.so"
DEFAULT_DIR = b"/run/current-system/sw/share/nix-ld/lib"


def test_the_system_specific_loader_wins_over_nix_ld():
    env = {b"NIX_LD": b"/generic/ld.so", b"NIX_LD_x86_64_linux": b"/specific/ld.so"}
    assert config.choose_loader(env, "x86_64_linux") == (b"/specific/ld.so", "NIX_LD_x86_64_linux")


def test_a_32_bit_program_reads_nix_ld_i686_linux():
    env = {b"NIX_LD_x86_64_linux": b"/64/ld.so", b"NIX_LD_i686_linux": b"/32/ld.so"}
    assert config.choose_loader(env, "i686_linux") == (b"/32/ld.so", "NIX_LD_i686_linux")


def test_the_ld_argument_wins_over_every_variable():
    env = {b"NIX_LD": b"/generic/ld.so", b"NIX_LD_x86_64_linux": b"/specific/ld.so"}
    assert config.choose_loader(env, "x86_64_linux", b"/mine/ld.so") == (b"/mine/ld.so", "--ld")


def test_an_empty_loader_variable_counts_as_unset():
    env = {b"NIX_LD_x86_64_linux": b"", b"NIX_LD": b"/generic/ld.so"}
    assert config.choose_loader(env, "x86_64_linux") == (b"/generic/ld.so", "NIX_LD")
    assert config.choose_loader({b"NIX_LD": b""}, "x86_64_linux") == (DEFAULT_LOADER, "default")


def test_one_trailing_newline_is_stripped_from_the_loader():
    assert config.choose_loader({b"NIX_LD": b"/nix/store/x/ld.so\n"}, None)[0] == b"/nix/store/x/ld.so"
    assert config.choose_loader({b"NIX_LD": b"/odd/ld.so\n\n"}, None)[0] == b"/odd/ld.so\n"


def test_a_loader_variable_holding_only_a_newline_counts_as_unset():
    assert config.choose_loader({b"NIX_LD": b"\n"}, None) == (DEFAULT_LOADER, "default")


def test_an_unknown_system_reads_only_nix_ld():
    assert config.choose_loader({b"NIX_LD": b"/g/ld.so"}, None) == (b"/g/ld.so", "NIX_LD")


def test_the_system_specific_library_path_replaces_the_generic_one():
    env = {b"NIX_LD_LIBRARY_PATH": b"/generic", b"NIX_LD_LIBRARY_PATH_x86_64_linux": b"/specific"}
    assert config.nix_ld_library_dirs(env, "x86_64_linux") == ((b"/specific",), "NIX_LD_LIBRARY_PATH_x86_64_linux")


def test_the_default_library_directory_applies_only_when_neither_is_set():
    assert config.nix_ld_library_dirs({}, "x86_64_linux") == ((DEFAULT_DIR,), "default")
    assert config.nix_ld_library_dirs({b"NIX_LD_LIBRARY_PATH": b""}, "x86_64_linux") == ((DEFAULT_DIR,), "default")
    assert config.nix_ld_library_dirs({b"NIX_LD_LIBRARY_PATH": b"/a"}, "x86_64_linux") == ((b"/a",), "NIX_LD_LIBRARY_PATH")


@pytest.mark.parametrize(
    "value, dirs",
    [
        (b"/a:/b", [b"/a", b"/b"]),
        (b"/a,/b", [b"/a", b"/b"]),
        (b"/a,/b:/c", [b"/a", b"/b", b"/c"]),
        (b":/a::/b,,", [b"/a", b"/b"]),
        (b"/with;semicolon", [b"/with;semicolon"]),
    ],
)
def test_nix_ld_library_path_splits_on_colons_and_commas_and_drops_empty_entries(value, dirs):
    assert config.split_nix_ld_path(value) == dirs


def test_ld_library_path_splits_as_glibc_does_on_colons_and_semicolons():
    assert config.split_ld_library_path(b"/a;/b::/c,d") == [b"/a", b"/b", b"/c,d"]
    assert config.split_ld_library_path(None) == []
    assert config.split_ld_library_path(b"") == []


def test_the_search_path_keeps_the_first_occurrence_of_each_directory():
    assert config.library_search_path([b"/a", b"/b"], [b"/b", b"/c"], [b"/a", b"/d"]) == (b"/a", b"/b", b"/c", b"/d")


def test_library_arguments_are_split_as_the_loader_would_and_empty_entries_dropped():
    """`nixld run -L 'a::b'`: glibc would read the empty entry as the current directory."""
    assert config.split_library_arguments([b"/a::/b", b"", b";/c"]) == [b"/a", b"/b", b"/c"]


@pytest.mark.parametrize(
    "value, level",
    [(None, "warn"), (b"", "warn"), (b"error", "error"), (b"info", "info"), (b"DEBUG", "debug"), (b"trace\n", "trace")],
)
def test_nix_ld_log_names_the_level(value, level):
    env = {} if value is None else {b"NIX_LD_LOG": value}
    index, complaint = config.log_level(env)
    assert config.LOG_LEVELS[index] == level
    assert complaint is None


def test_an_unknown_log_level_is_reported_and_warn_is_used():
    index, complaint = config.log_level({b"NIX_LD_LOG": b"loud"})
    assert config.LOG_LEVELS[index] == "warn"
    assert "NIX_LD_LOG='loud'" in complaint and "error, warn, info, debug, trace" in complaint
