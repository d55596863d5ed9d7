"""The shim's C units that read what a caller chooses, fuzzed with hypothesis: the message
formatter (message.c), the stack it lends from and gives back (stack.c), the launcher's stack
for a loader started by hand, and the environment readers (contract.c). Every test runs on the
units as built and under AddressSanitizer and UndefinedBehaviorSanitizer (tests/shim_c.py), and
holds them to a model written here in Python: the specification, in a few lines each.
"""

from __future__ import annotations

from environments import directories, path_values
from hypothesis import example, given
from hypothesis import strategies as st
from shim_c import ADDED_ENTRIES, AT_ENTRY, AT_IGNORE, LINE_LIMIT, TRAMPOLINE, VALUE_LIMIT, WORD, unsecure_variables

from nixld import config

# ---------------------------------------------------------------------------------------------
# Messages: one bounded line, the caller's bytes escaped and cut


def shown(byte: int) -> bytes:
    return b"\\x%02x" % byte if byte < 0x20 or byte == 0x7F else bytes([byte])


def is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def whole_characters(data: bytes, length: int) -> int:
    """How many of the first `length` bytes end on a UTF-8 character boundary."""
    start, back = length, 0
    while start > 0 and back < 3 and is_continuation(data[start - 1]):
        start, back = start - 1, back + 1
    if start > 0:
        lead = data[start - 1]
        size = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4 if lead & 0xF8 == 0xF0 else 1
        if size > back + 1:
            return start - 1
    return length


def value_atoms(data: bytes) -> list[bytes]:
    """A value as the line shows it, in pieces that go in whole or not at all: whole when it
    shows in VALUE_LIMIT bytes, else its start and its end around "...", cut on characters."""
    if sum(len(shown(byte)) for byte in data) <= VALUE_LIMIT:
        return [shown(byte) for byte in data]
    half = (VALUE_LIMIT - 3) // 2
    head = size = 0
    while size + len(shown(data[head])) <= half:
        size, head = size + len(shown(data[head])), head + 1
    tail, size = len(data), 0
    while size + len(shown(data[tail - 1])) <= half:
        size, tail = size + len(shown(data[tail - 1])), tail - 1
    head = whole_characters(data, head)
    while tail < len(data) and is_continuation(data[tail]):
        tail += 1
    return [shown(byte) for byte in data[:head]] + [b"..."] + [shown(byte) for byte in data[tail:]]


def expected_line(pieces: list[tuple[str, bytes]]) -> bytes:
    text, cut = b"", False
    for kind, data in pieces:
        for atom in ([bytes([byte]) for byte in data] if kind == "text" else value_atoms(data)):
            if cut or len(atom) > LINE_LIMIT - 4 - len(text):
                cut = True
                break
            text += atom
    if cut:
        text = text[:whole_characters(text, len(text))] + b"..."
    return text + b"\n"


own_words = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(str.encode)
caller_bytes = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=400).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(0, 5000).map(lambda size: b"/x" * size),
)
pieces = st.lists(st.one_of(st.tuples(st.just("text"), own_words), st.tuples(st.just("value"), caller_bytes)),
                  max_size=12)


@given(pieces=pieces)
@example(pieces=[("value", b"/x" * 3000), ("text", b" (from NIX_LD) does not exist"), ("value", b"z" * 1100)])
@example(pieces=[("text", b"a" * (LINE_LIMIT - 5)), ("value", "\u20ac".encode())])
@example(pieces=[("value", ("\u20ac" * 300).encode())] * 8)
def test_a_message_is_one_line_within_the_limit_whatever_it_is_given(shim_c_library, pieces):
    line = shim_c_library.call("format_line", pieces)
    assert line == expected_line(pieces)
    assert len(line) <= LINE_LIMIT and line.endswith(b"\n") and line.count(b"\n") == 1
    assert not [byte for byte in line[:-1] if byte < 0x20 or byte == 0x7F]


@given(values=st.lists(st.text(max_size=600), max_size=8))
def test_a_message_of_utf_8_values_is_utf_8_however_it_is_cut(shim_c_library, values):
    line = shim_c_library.call("format_line", [("value", value.encode("utf-8", "surrogatepass")) for value in values])
    line.decode("utf-8", "surrogatepass")


@given(value=st.binary(min_size=VALUE_LIMIT + 1, max_size=20000))
def test_a_long_value_shows_its_start_and_its_end_and_never_all_of_it(shim_c_library, value):
    line = shim_c_library.call("format_line", [("value", value)])
    assert b"..." in line and len(line) <= VALUE_LIMIT + 1


# ---------------------------------------------------------------------------------------------
# The stack: LD_LIBRARY_PATH lent to the loader, and everything given back to the program

argument = st.binary(max_size=12).map(lambda value: value.replace(b"\0", b""))
environment_entry = st.one_of(
    argument,
    st.builds(lambda value: b"LD_LIBRARY_PATH=" + value, argument),
    st.builds(lambda name, value: name + b"=" + value,
              st.sampled_from([b"NIX_LD", b"NIX_LD_LIBRARY_PATH", b"NIX_LD_x86_64-linux",
                               b"NIX_LD_LIBRARY_PATH_i686-linux", b"NIX_LDX", b"LD_LIBRARY_PATHX", b"PATH"]), argument),
)
auxv_pair = st.tuples(st.one_of(st.integers(1, 50), st.just(AT_ENTRY)), st.integers(0, 2 ** (8 * WORD) - 1))


def lent_slots(envp: list[bytes]) -> list[int]:
    """Where the shim lends LD_LIBRARY_PATH: the first and last of the caller's, else the last
    of nix-ld's variables."""
    ld = [index for index, entry in enumerate(envp) if entry.startswith(b"LD_LIBRARY_PATH=")]
    if ld:
        return sorted({ld[0], ld[-1]})
    nix = [index for index, entry in enumerate(envp) if entry.startswith(b"NIX_LD")]
    return nix[-1:]


@given(argv=st.lists(argument, max_size=6), envp=st.lists(environment_entry, max_size=10),
       auxv=st.lists(auxv_pair, max_size=8), library_path=argument)
@example(argv=[], envp=[], auxv=[(AT_ENTRY, 0x401000)], library_path=b"/nix/lib")
@example(argv=[b"p"], envp=[b"LD_LIBRARY_PATH=/a", b"X=1", b"LD_LIBRARY_PATH=/b"], auxv=[(6, 4096), (AT_ENTRY, 1)],
         library_path=b"/b:/nix")
@example(argv=[b"p"], envp=[b"NIX_LD=/ld.so", b"NIX_LD_x86_64-linux=/ld.so", b"X=1"], auxv=[(AT_ENTRY, 1)],
         library_path=b"/nix")
def test_the_loader_sees_the_library_path_and_the_program_the_kernels_stack(shim_c_library, argv, envp, auxv,
                                                                            library_path):
    result = shim_c_library.call("lend_and_repay", argv, envp, auxv, library_path)
    entry = b"LD_LIBRARY_PATH=" + library_path
    entries = [value for kind, value in auxv if kind == AT_ENTRY]
    if not entries:
        # Nothing can be taken back before the program starts: nothing is lent.
        assert not result["diverted"]
        assert result["loader"] == result["program"] == {"argv": argv, "envp": envp, "auxv": auxv}
        return
    first_entry = auxv.index((AT_ENTRY, entries[0]))
    diverted_auxv = [*auxv[:first_entry], (AT_ENTRY, TRAMPOLINE), *auxv[first_entry + 1:]]
    slots = lent_slots(envp)
    if slots:
        loaders_envp = [entry if index in slots else value for index, value in enumerate(envp)]
    else:
        loaders_envp = envp + [entry] * ADDED_ENTRIES
    assert result["loader"] == {"argv": argv, "envp": loaders_envp, "auxv": diverted_auxv}
    assert result["moved_by"] == (0 if slots else 16)
    # The program: the caller's argv and envp; the kernel's auxv, after AT_IGNORE pairs where
    # entries were added; its own entry point.
    ignored = [] if slots else [(AT_IGNORE, 0)] * (ADDED_ENTRIES // 2)
    assert result["program"] == {"argv": argv, "envp": envp, "auxv": ignored + auxv}
    assert result["program_entry"] == entries[0]


@given(args=st.lists(argument, max_size=6), envp=st.lists(environment_entry, max_size=8),
       auxv=st.lists(auxv_pair, max_size=10), library_path=argument, argv0=st.none() | argument,
       image=st.tuples(*[st.integers(0, 2 ** (8 * WORD) - 1)] * 4))
def test_the_launchers_loader_starts_on_the_stack_the_kernel_gives_a_loader_started_by_hand(
        shim_c_library, args, envp, auxv, library_path, argv0, image):
    view = shim_c_library.call("by_hand_stack", b"/ld.so", library_path, argv0, b"/the/program", args, envp, auxv,
                               image)
    expected_argv = [b"/ld.so", *([b"--library-path", library_path] if library_path else []),
                     *([b"--argv0", argv0] if argv0 is not None else []), b"/the/program", *args]
    replaced = {3: image[0], 4: image[1], 5: image[2], 7: 0, AT_ENTRY: image[3]}
    expected_auxv = [(kind, replaced.get(kind, value)) for kind, value in auxv]
    assert (view["argv"], view["envp"]) == (expected_argv, envp)
    assert [pair for pair in view["auxv"] if pair[0] != 31] == [pair for pair in expected_auxv if pair[0] != 31]
    assert [kind for kind, _ in view["auxv"]] == [kind for kind, _ in auxv]
    assert view["execfn_is_the_loader"] == (31 in dict(auxv))


# ---------------------------------------------------------------------------------------------
# Environments: the readers, the launcher's join, secure mode's cleaning

names = st.sampled_from([b"LD_LIBRARY_PATH", b"NIX_LD", b"NIX_LD_x86_64-linux", b"TMPDIR", b"LD_PRELOAD", b"A",
                         b"LD_LIBRARY_PATHS", *unsecure_variables()])
entry_strategy = st.one_of(st.builds(lambda name, value: name + b"=" + value, names, argument), argument, names)


@given(entries=st.lists(entry_strategy, max_size=12), name=names)
def test_getenv_finds_the_first_entry_and_the_loaders_reading_the_last(shim_c_library, entries, name):
    values = [entry[len(name) + 1:] for entry in entries if entry.startswith(name + b"=")]
    assert shim_c_library.call("getenv", entries, name, False) == (values[0] if values else None)
    assert shim_c_library.call("getenv", entries, name, True) == (values[-1] if values else None)


@given(entries=st.lists(entry_strategy, max_size=16))
def test_secure_mode_keeps_every_entry_but_the_variables_glibc_removes(shim_c_library, entries):
    unsecure = unsecure_variables()
    kept = [entry for entry in entries if entry.partition(b"=")[1] != b"=" or entry.partition(b"=")[0] not in unsecure]
    assert shim_c_library.call("drop_unsecure_variables", entries) == kept


@given(callers=st.none() | path_values(), fixed=st.lists(directories, max_size=5))
def test_the_launchers_library_path_is_the_callers_then_its_own_each_once(shim_c_library, callers, fixed):
    expected = config.library_search_path(config.split_ld_library_path(callers), fixed)
    assert shim_c_library.call("join_library_path", callers, b":".join(fixed)) == b":".join(expected)
