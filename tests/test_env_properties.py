"""Properties of the environment rewriting, over arbitrary byte environments (hypothesis)."""

from __future__ import annotations

import os

import pytest
from crafted import write_elf, write_loader
from environments import directories, environments, library_args, path_values
from hypothesis import given
from hypothesis import strategies as st

from nixld import config, plan_launch
from nixld.loader import MODE_ENVIRONMENT, MODE_LIBRARY_PATH, environment_entries, environment_lookup

DEFAULT_DIR = b"/run/current-system/sw/share/nix-ld/lib"
SYSTEM = "x86_64_linux"


def split(value: bytes | None, separators: bytes) -> list[bytes]:
    """The reference split: every separator is a boundary; empty entries are not directories."""
    for separator in separators[1:]:
        value = (value or b"").replace(bytes([separator]), separators[:1])
    return [entry for entry in (value or b"").split(separators[:1]) if entry]


def system_specific(env, base: bytes) -> bytes:
    """The name of `base`'s variable for SYSTEM that counts: nix-ld 2.x's spelling when env has
    it (empty or not), else nix-ld 1.x's when env has that."""
    current, old = base + b"_x86_64_linux", base + b"_x86_64-linux"
    return old if current not in env and old in env else current


def expected_search_path(env, libs) -> list[bytes]:
    """nix-ld's contract restated independently of nixld.config."""
    caller = split(env.get(b"LD_LIBRARY_PATH"), b":;")
    specific = env.get(system_specific(env, b"NIX_LD_LIBRARY_PATH"))
    generic = env.get(b"NIX_LD_LIBRARY_PATH")
    if specific:
        nix = split(specific, b":,")
    elif generic:
        nix = split(generic, b":,")
    else:
        nix = [DEFAULT_DIR]
    result = []
    for directory in caller + [piece for value in libs for piece in split(value, b":;")] + nix:
        if directory not in result:
            result.append(directory)
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    return {
        "program": write_elf(root / "tool"),
        "loader": write_loader(root / "ld.so"),
        "old_loader": write_loader(root / "old-ld.so", options=(b"--argv0",)),
    }


@given(path_values())
def test_split_entries_are_never_empty_and_never_hold_a_separator(value):
    for entry in config.split_nix_ld_path(value):
        assert entry and not set(entry) & set(b":,")
    for entry in config.split_ld_library_path(value):
        assert entry and not set(entry) & set(b":;")


@given(st.lists(directories, min_size=1, max_size=6), st.data())
def test_splitting_recovers_the_directories_whatever_the_separators(dirs, data):
    dirs = [d for d in dirs if b";" not in d]
    value = b""
    for index, directory in enumerate(dirs):
        value += (data.draw(st.sampled_from([b":", b",", b"::", b",,", b":,"])) if index else b"") + directory
    assert config.split_nix_ld_path(value) == dirs


@given(st.lists(st.lists(directories, max_size=5), max_size=4))
def test_the_search_path_has_each_directory_once_in_first_seen_order(groups):
    merged = config.library_search_path(*groups)
    flat = [directory for group in groups for directory in group]
    assert len(set(merged)) == len(merged)
    assert set(merged) == set(flat)
    assert list(merged) == sorted(set(flat), key=flat.index)


def taken(base: bytes, value: bytes | None) -> bool:
    """Whether a value of `base`'s variables is taken: not empty (a loader's, once one trailing
    newline is stripped)."""
    if value and base == b"NIX_LD" and value.endswith(b"\n"):
        value = value[:-1]
    return bool(value)


@given(environments)
def test_the_system_specific_variables_take_precedence_in_either_spelling(env):
    """nix-ld 2.x's spelling (NIX_LD_x86_64_linux) wherever env has it, even empty; nix-ld 1.x's
    (NIX_LD_x86_64-linux) only where it has not; the generic variable where neither is taken."""
    for base, read in ((b"NIX_LD", config.choose_loader), (b"NIX_LD_LIBRARY_PATH", config.nix_ld_library_dirs)):
        _, source = read(env, SYSTEM)
        specific = system_specific(env, base)
        if taken(base, env.get(specific)):
            assert source == specific.decode()
        elif taken(base, env.get(base)):
            assert source == base.decode()
        else:
            assert source == "default"


@given(environments, library_args)
def test_in_library_path_mode_the_program_gets_the_callers_environment_byte_for_byte(files, env, libs):
    launch = plan_launch(files["program"], libs, env=env, ld=files["loader"])
    assert launch.mode == MODE_LIBRARY_PATH
    assert launch.env == environment_entries(env)
    assert list(launch.library_path) == expected_search_path(env, libs)
    assert launch.argv[1:3] == (b"--library-path", b":".join(expected_search_path(env, libs)))


@given(environments, library_args)
def test_without_library_path_support_only_ld_library_path_changes(files, env, libs):
    launch = plan_launch(files["program"], libs, env=env, ld=files["old_loader"])
    assert launch.mode == MODE_ENVIRONMENT
    rewritten = environment_lookup(launch.env)
    assert rewritten[b"LD_LIBRARY_PATH"] == b":".join(expected_search_path(env, libs))
    assert {k: v for k, v in rewritten.items() if k != b"LD_LIBRARY_PATH"} == {
        k: v for k, v in env.items() if k != b"LD_LIBRARY_PATH"
    }
    names = [entry.split(b"=", 1)[0] for entry in launch.env]
    assert [k for k in names if k != b"LD_LIBRARY_PATH"] == [k for k in env if k != b"LD_LIBRARY_PATH"]


@given(environments, library_args)
def test_the_handed_over_path_never_holds_an_empty_entry(files, env, libs):
    launch = plan_launch(files["program"], libs, env=env, ld=files["loader"])
    joined = launch.argv[2]
    assert b"" not in joined.split(b":") or joined == b""
    assert all(directory for directory in launch.library_path)


@given(st.binary(min_size=1, max_size=30).filter(lambda v: b"\0" not in v))
def test_the_loader_variable_loses_exactly_one_trailing_newline(value):
    loader, source = config.choose_loader({b"NIX_LD": value}, SYSTEM)
    stripped = value[:-1] if value.endswith(b"\n") else value
    if stripped:
        assert (loader, source) == (stripped, "NIX_LD")
    else:
        assert source == "default"


def test_environment_names_and_values_need_not_be_utf8(files):
    env = {b"\xff\xfeNAME": b"\x80value", b"LD_LIBRARY_PATH": b"/\xff/lib"}
    launch = plan_launch(files["program"], env=env, ld=files["loader"])
    assert launch.env == environment_entries(env)
    assert launch.library_path[0] == b"/\xff/lib"
    assert os.fsencode(os.fsdecode(launch.argv[2])) == launch.argv[2]
