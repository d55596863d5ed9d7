"""The shim's C (nixld/shim/) driven from Python: one library built from the units that read
what a caller chooses (contract.c, message.c, stack.c and load.c), its declarations, and the
operations the tests perform on it. Operations take and return plain bytes, ints and lists,
never cdata, so that the same operation runs on a library built as the shim is, in the test's
own process, and on one built with -fsanitize=address,undefined, in a child process that
serves them (`python shim_c.py --serve LIBRARY`, driven by SanitizedLibrary).

gcc builds the library and cffi opens it in ABI mode: no Python headers nor setuptools needed.
"""

from __future__ import annotations

import os
import pickle
import re
import select
import struct
import subprocess
import sys
from pathlib import Path

SHIM_SOURCE = Path(__file__).resolve().parent.parent / "nixld" / "shim"
SOURCES = ["contract.c", "message.c", "stack.c", "load.c"]
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]

AT_NULL, AT_IGNORE, AT_ENTRY = 0, 1, 9
WORD = struct.calcsize("P")
ADDED_ENTRIES = 16 // WORD  # NIXLD_ADDED_ENTRIES


def _constant(header: str, name: str) -> int:
    return int(re.search(rf"#define {name} (\d+)", (SHIM_SOURCE / header).read_text()).group(1))


LINE_LIMIT = _constant("message.h", "NIXLD_LINE_LIMIT")
VALUE_LIMIT = _constant("message.h", "NIXLD_VALUE_LIMIT")


def unsecure_variables() -> list[bytes]:
    """The variables the launcher takes out of a set-user-ID program's environment, as
    contract.c lists them."""
    source = (SHIM_SOURCE / "contract.c").read_text()
    listing = re.search(r"unsecure_variables\[\] =\s*((?:\"[^\"]*\"\s*)+);", source).group(1)
    return [name.encode() for name in "".join(re.findall(r'"([^"]*)"', listing)).split("\\0")[:-1]]

DECLARATIONS = f"""
struct nixld_string {{ const char *data; size_t length; }};
enum nixld_log_level {{ NIXLD_LOG_ERROR, NIXLD_LOG_WARN, NIXLD_LOG_INFO, NIXLD_LOG_DEBUG, NIXLD_LOG_TRACE }};
struct nixld_settings {{
    struct nixld_string loader;
    struct nixld_string loader_variable;
    struct nixld_string nix_library_path;
    struct nixld_string nix_library_path_variable;
    struct nixld_string ld_library_path;
    enum nixld_log_level log_level;
    struct nixld_string unknown_log_level;
}};
void nixld_read_settings(char *const *envp, const char *system, int secure, struct nixld_settings *settings);
size_t nixld_library_path(const struct nixld_settings *settings, char *out, size_t capacity);
size_t nixld_join_library_path(struct nixld_string ld_library_path, struct nixld_string directories, char *out,
                               size_t capacity);
struct nixld_string nixld_getenv(char *const *envp, const char *name);
struct nixld_string nixld_getenv_last(char *const *envp, const char *name);
size_t nixld_drop_unsecure_variables(char **envp);

struct line {{ char text[{LINE_LIMIT}]; size_t length; int cut; }};
void line_begin(struct line *line);
void add_text(struct line *line, const char *text);
void add_value(struct line *line, const char *data, size_t length);
size_t line_finish(struct line *line);

struct nixld_stack {{ unsigned long *start; char **argv; char **envp; unsigned long *auxv; }};
struct nixld_loan {{ char **slots[2]; char *originals[2]; char **added; unsigned long *entry;
                     unsigned long program_entry; }};
void nixld_read_stack(unsigned long *start, struct nixld_stack *stack);
int nixld_divert_entry(struct nixld_stack *stack, struct nixld_loan *loan, unsigned long trampoline);
int nixld_lend_slots(struct nixld_stack *stack, char *entry, struct nixld_loan *loan);
unsigned long *nixld_add_entries(struct nixld_stack *stack, char *entry, struct nixld_loan *loan);
unsigned long nixld_repay(struct nixld_loan *loan);
int nixld_by_hand_argv(char **out, const char *loader, const char *library_path, const char *argv0,
                       const char *program, char *const *args, int count);
struct nixld_loader_image {{ unsigned long phdr, phent, phnum, entry; const char *path; }};
size_t nixld_by_hand_stack_words(int argc, char *const *envp, const unsigned long *auxv);
void nixld_lay_out_by_hand_stack(unsigned long *out, int argc, char *const *envp, const unsigned long *auxv,
                                 const struct nixld_loader_image *image);

const char *check_loader_file(const char *path, long *error);
const char *map_loader_file(const char *path, long *error);
"""

# What the library adds to the units: the loader's check and mapping as the shim performs them,
# with nothing left open or mapped afterwards.
GLUE = r"""
#include "load.h"

const char *check_loader_file(const char *path, long *error)
{
    struct loader loader;
    const char *fault = nixld_open_loader(path, 4096, &loader);
    if (!fault)
        nixld_syscall3(NIXLD_SYS_close, loader.fd, 0, 0);
    *error = loader.error;
    return fault;
}

const char *map_loader_file(const char *path, long *error)
{
    struct loader loader;
    const char *fault = nixld_open_loader(path, 4096, &loader);
    if (!fault)
        fault = nixld_map_loader(&loader, 4096);
    *error = loader.error;
    if (fault)
        return fault;
    unsigned long low = -1UL, high = 0;
    for (int i = 0; i < loader.header.e_phnum; i++) {
        const program_header *segment = &loader.headers[i];
        if (segment->p_type != PT_LOAD)
            continue;
        if (segment->p_vaddr < low)
            low = segment->p_vaddr;
        if (segment->p_vaddr + segment->p_memsz > high)
            high = segment->p_vaddr + segment->p_memsz;
    }
    nixld_syscall3(NIXLD_SYS_munmap, (long)(loader.base + (low & -4096UL)),
                   (long)(((high + 4095) & -4096UL) - (low & -4096UL)), 0);
    return 0;
}
"""


def build(directory: Path, *, sanitize: bool = False, compile_all=None) -> Path:
    """The library, built by gcc into `directory` (with the sanitizers when `sanitize`), with
    conftest's compile_all (which fails the session loudly on a compiler error)."""
    name = "shim_c_sanitized" if sanitize else "shim_c"
    glue = directory / f"{name}_glue.c"
    glue.write_text(GLUE)
    library = directory / f"{name}.so"
    compile_all([["-shared", "-fPIC", *(SANITIZER_FLAGS if sanitize else []), "-I", str(SHIM_SOURCE),
                  "-o", str(library), str(glue), *(str(SHIM_SOURCE / source) for source in SOURCES)]])
    return library


class Library:
    """The library opened in this process."""

    def __init__(self, path: Path) -> None:
        from cffi import FFI

        self.ffi = FFI()
        self.ffi.cdef(DECLARATIONS)
        self.lib = self.ffi.dlopen(str(path))

    def call(self, operation: str, *args):
        return OPERATIONS[operation](self, *args)


class SanitizedLibrary:
    """The library built with the sanitizers, opened in a child Python started with the
    sanitizers' runtime preloaded (it must come first), and serving operations over a pipe.
    When the C faults, the sanitizer's report ends the child; `call` then raises
    AssertionError with that report, and the next call starts a new child. An operation that
    does not return within CALL_TIMEOUT seconds fails the same way, its child killed."""

    CALL_TIMEOUT = 60

    def __init__(self, path: Path, preload: str) -> None:
        self.path, self.preload, self.child = path, preload, None

    def _start(self) -> None:
        env = {**os.environ, "LD_PRELOAD": self.preload,
               "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
               "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=86"}
        self.child = subprocess.Popen([sys.executable, __file__, "--serve", str(self.path)], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def call(self, operation: str, *args):
        if self.child is None or self.child.poll() is not None:
            self._start()
        request = pickle.dumps((operation, args))
        try:
            self.child.stdin.write(struct.pack("<Q", len(request)) + request)
            self.child.stdin.flush()
            if not select.select([self.child.stdout], [], [], self.CALL_TIMEOUT)[0]:
                self.child.kill()
                self.child.communicate()
                self.child = None
                raise AssertionError(f"{operation} did not return within {self.CALL_TIMEOUT} s in the sanitized child")
            size = self.child.stdout.read(8)
            if len(size) == 8:
                status, value = pickle.loads(self.child.stdout.read(struct.unpack("<Q", size)[0]))
                if status == "ok":
                    return value
                raise AssertionError(f"{operation} raised in the sanitized child: {value}")
        except BrokenPipeError:
            pass
        _, report = self.child.communicate(timeout=60)
        returncode = self.child.returncode
        self.child = None
        raise AssertionError(f"the sanitized C ended the child (status {returncode}) in {operation}:\n"
                             f"{report.decode(errors='backslashreplace')}")

    def close(self) -> None:
        if self.child is not None:
            self.child.communicate(timeout=60)


def serve(path: str) -> None:
    """The child's loop: length-prefixed pickled (operation, args) in, ("ok", result) out."""
    library = Library(Path(path))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while True:
        size = requests.read(8)
        if len(size) < 8:
            return
        operation, args = pickle.loads(requests.read(struct.unpack("<Q", size)[0]))
        try:
            reply = ("ok", library.call(operation, *args))
        except Exception as error:  # reported to the parent, which fails the test with it
            reply = ("error", repr(error))
        data = pickle.dumps(reply)
        replies.write(struct.pack("<Q", len(data)) + data)
        replies.flush()


# ---------------------------------------------------------------------------------------------
# Operations: each takes the library (ffi, lib) and plain data, and returns plain data.


def _c_strings(ffi, values: list[bytes]) -> list:
    return [ffi.new("char[]", value) for value in values]


def _string(ffi, string) -> bytes | None:
    return None if string.data == ffi.NULL else ffi.unpack(string.data, string.length)


def read_settings(c, entries: list[bytes], system: str, secure: bool) -> dict:
    """nixld_read_settings and nixld_library_path on `entries`."""
    ffi, lib = c.ffi, c.lib
    keep = _c_strings(ffi, entries)
    envp = ffi.new("char *[]", [*keep, ffi.NULL])
    settings = ffi.new("struct nixld_settings *")
    lib.nixld_read_settings(envp, system.encode(), int(secure), settings)
    length = lib.nixld_library_path(settings, ffi.NULL, 0)
    buffer = ffi.new("char[]", length + 1)
    written = lib.nixld_library_path(settings, buffer, length)
    # Asked without room, or with too little, it counts (what no longer fits, repeats too):
    # never less than it needs, so that a caller knows when its buffer was too small.
    assert length >= written
    assert lib.nixld_library_path(settings, ffi.new("char[]", 8), 8) >= written
    return {"loader": _string(ffi, settings.loader), "loader_variable": _string(ffi, settings.loader_variable),
            "library_path": ffi.unpack(buffer, written),
            "nix_dirs_variable": _string(ffi, settings.nix_library_path_variable),
            "ld_library_path": _string(ffi, settings.ld_library_path), "log_level": int(settings.log_level),
            "unknown_log_level": _string(ffi, settings.unknown_log_level)}


def getenv(c, entries: list[bytes], name: bytes, last: bool) -> bytes | None:
    ffi, lib = c.ffi, c.lib
    keep = _c_strings(ffi, entries)
    envp = ffi.new("char *[]", [*keep, ffi.NULL])
    return _string(ffi, (lib.nixld_getenv_last if last else lib.nixld_getenv)(envp, name))


def join_library_path(c, ld_library_path: bytes | None, directories: bytes) -> bytes:
    ffi, lib = c.ffi, c.lib
    callers_data = ffi.NULL if ld_library_path is None else ffi.new("char[]", ld_library_path)
    callers = ffi.new("struct nixld_string *", (callers_data, len(ld_library_path or b"")))[0]
    fixed_data = ffi.new("char[]", directories)
    fixed = ffi.new("struct nixld_string *", (fixed_data, len(directories)))[0]
    length = lib.nixld_join_library_path(callers, fixed, ffi.NULL, 0)
    buffer = ffi.new("char[]", length + 1)
    return ffi.unpack(buffer, lib.nixld_join_library_path(callers, fixed, buffer, length))


def drop_unsecure_variables(c, entries: list[bytes]) -> list[bytes]:
    ffi, lib = c.ffi, c.lib
    keep = _c_strings(ffi, entries)
    envp = ffi.new("char *[]", [*keep, ffi.NULL])
    count = lib.nixld_drop_unsecure_variables(envp)
    assert envp[count] == ffi.NULL
    return [ffi.string(envp[index]) for index in range(count)]


def format_line(c, pieces: list[tuple[str, bytes]]) -> bytes:
    """A line made of `pieces`: ("text", nixld's own words) or ("value", the caller's bytes)."""
    ffi, lib = c.ffi, c.lib
    line = ffi.new("struct line *")
    lib.line_begin(line)
    for kind, data in pieces:
        if kind == "text":
            lib.add_text(line, ffi.new("char[]", data))
        else:
            lib.add_value(line, ffi.new("char[]", data), len(data))
    length = lib.line_finish(line)
    assert length == line.length <= LINE_LIMIT
    return ffi.unpack(line.text, length)


def _lay_out(ffi, argv: list, envp: list, auxv: list[tuple[int, int]], below: int):
    """A stack (argc, argv, NULL, envp, NULL, auxv, AT_NULL) in a fresh buffer, with `below`
    free words before it; returns (buffer, start, the strings kept alive)."""
    argv_strings, envp_strings = _c_strings(ffi, argv), _c_strings(ffi, envp)
    words = [len(argv), *(int(ffi.cast("unsigned long", s)) for s in argv_strings), 0,
             *(int(ffi.cast("unsigned long", s)) for s in envp_strings), 0,
             *(value for pair in auxv for value in pair), AT_NULL, 0]
    buffer = ffi.new("unsigned long[]", below + len(words))
    for index, word in enumerate(words):
        buffer[below + index] = word
    return buffer, buffer + below, (argv_strings, envp_strings)


def _view(ffi, start) -> dict:
    """What a process would find on the stack at `start`: argv, envp (as bytes) and the auxv
    pairs, AT_IGNORE ones included, found by walking past envp."""
    argc = start[0]
    argv = [ffi.string(ffi.cast("char *", start[1 + index])) for index in range(argc)]
    assert start[1 + argc] == 0
    at, envp = 2 + argc, []
    while start[at]:
        envp.append(ffi.string(ffi.cast("char *", start[at])))
        at += 1
    at += 1
    auxv = []
    while start[at] != AT_NULL:
        auxv.append((int(start[at]), int(start[at + 1])))
        at += 2
    return {"argv": argv, "envp": envp, "auxv": auxv}


TRAMPOLINE = 0x7777


def lend_and_repay(c, argv: list[bytes], envp: list[bytes], auxv: list[tuple[int, int]], library_path: bytes) -> dict:
    """What the shim does to a stack when it has `library_path` to pass, what the loader sees
    then, and what the program sees once the trampoline has repaid the loan."""
    ffi, lib = c.ffi, c.lib
    buffer, start, keep = _lay_out(ffi, argv, envp, auxv, ADDED_ENTRIES)
    entry = ffi.new("char[]", b"LD_LIBRARY_PATH=" + library_path)
    stack = ffi.new("struct nixld_stack *")
    loan = ffi.new("struct nixld_loan *")
    lib.nixld_read_stack(start, stack)
    diverted = lib.nixld_divert_entry(stack, loan, TRAMPOLINE)
    added = False
    if diverted and not lib.nixld_lend_slots(stack, entry, loan):
        lib.nixld_add_entries(stack, entry, loan)
        added = True
    moved_by = int(ffi.cast("unsigned long", start)) - int(ffi.cast("unsigned long", stack.start))
    loaders_view = _view(ffi, stack.start)
    program_entry = lib.nixld_repay(loan) if diverted else None
    return {"diverted": bool(diverted), "added": added, "moved_by": moved_by, "loader": loaders_view,
            "program": _view(ffi, stack.start), "program_entry": program_entry,
            "entry_address": int(ffi.cast("unsigned long", entry))}


def by_hand_stack(c, loader: bytes, library_path: bytes, argv0: bytes | None, program: bytes, args: list[bytes],
                  envp: list[bytes], auxv: list[tuple[int, int]], image: tuple[int, int, int, int]) -> dict:
    """The launcher's stack for a loader started by hand (nixld_by_hand_argv, then
    nixld_lay_out_by_hand_stack), as the loader would find it."""
    ffi, lib = c.ffi, c.lib
    _, caller, keep = _lay_out(ffi, [b"launcher", *args], envp, auxv, 0)
    caller_stack = ffi.new("struct nixld_stack *")
    lib.nixld_read_stack(caller, caller_stack)
    loader_path, path, name, program_path = (ffi.new("char[]", value) for value in
                                             (loader, library_path, argv0 or b"", program))
    argc = len(args) + 1
    words = lib.nixld_by_hand_stack_words(argc + 6, caller_stack.envp, caller_stack.auxv)
    out = ffi.new("unsigned long[]", words)
    loader_argc = lib.nixld_by_hand_argv(ffi.cast("char **", out + 1), loader_path, path,
                                         name if argv0 is not None else ffi.NULL, program_path,
                                         caller_stack.argv + 1, argc - 1)
    facts = ffi.new("struct nixld_loader_image *", (*image, loader_path))
    lib.nixld_lay_out_by_hand_stack(out, loader_argc, caller_stack.envp, caller_stack.auxv, facts)
    view = _view(ffi, out)
    view["execfn_is_the_loader"] = dict(view["auxv"]).get(31) == int(ffi.cast("unsigned long", loader_path))
    return view


def check_loader(c, path: bytes) -> str | None:
    ffi, lib = c.ffi, c.lib
    error = ffi.new("long *")
    fault = lib.check_loader_file(path, error)
    return None if fault == ffi.NULL else ffi.string(fault).decode()


def map_loader(c, path: bytes) -> str | None:
    ffi, lib = c.ffi, c.lib
    error = ffi.new("long *")
    fault = lib.map_loader_file(path, error)
    return None if fault == ffi.NULL else ffi.string(fault).decode()


OPERATIONS = {operation.__name__: operation for operation in (
    read_settings, getenv, join_library_path, drop_unsecure_variables, format_line, lend_and_repay,
    by_hand_stack, check_loader, map_loader)}


if __name__ == "__main__":
    if sys.argv[1:2] != ["--serve"] or len(sys.argv) != 3:
        sys.exit("usage: shim_c.py --serve LIBRARY")
    serve(sys.argv[2])
