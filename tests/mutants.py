"""Mutation testing: how many planted bugs in the shim's C and in nixld's Python do the tests catch?

Run by hand, from anywhere (not collected by pytest: its name does not start with test_):

    python tests/mutants.py [--list] [--kind c|python] [--only NAME ...] [--keep-going]
                            [--venv DIR] [--tests FILE ...] [--timeout SECONDS] [--logs DIR]

It works on the checkout it lives in. A scratch virtualenv gets the checkout installed
(`pip install '.[test]'`, from a copy of its tracked files, so the checkout gains no build/),
and the unmutated tests must pass there first. Then, for each mutant, a copy of the tracked
files gets one exact replacement in one file, and the copy's tests run from a scratch
directory; a failing test catches the mutant.

A C mutant changes a file under nixld/shim/: the shims and the launcher are rebuilt from the
copy into the virtualenv's installed package, the copy's nixld/shim/ sources replace the
installed ones (tests that build a shim themselves, the aarch64 one, build it from those), and
the C libraries the tests compile through cffi come from the copy's nixld/shim/, so they see
the mutant too. A mutant that does not compile is stillborn and not counted. The installed
shims and sources are put back at the end. The shim-related tests run unless --tests says
otherwise.

A Python mutant changes a .py file under nixld/ (nixld/commands/ included): the installed
package's copy of that file is replaced by the mutated one while the tests run, and put back
byte for byte right after; nothing is rebuilt. It runs the test files its entry names (the
whole suite when it names none), or those --tests names: `--tests tests` is the whole suite.

Leave the checkout alone while it runs: each mutant is copied from its working tree. A run
in the background is stopped with SIGTERM, which puts back what it changed, as Ctrl-C does.

The list of mutants (MUTANTS) is written for one version of the code; when the code changes,
rewrite the list, not the engine below it. A mutant that no longer applies (its text is not in
its file exactly once) is a bug in the list: the run stops before anything else, unless
--keep-going, which reports it as broken and runs the others.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The mutants, for the shim's C and for nixld's Python as of this checkout. Each: a name, a file
# (under nixld/shim/ for C; a .py file under nixld/ for Python), the exact text to replace (found
# exactly once in that file), its replacement, what real bug that plants, in one sentence, and,
# for Python, the test files that concern that code (None: the whole suite).

Mutant = namedtuple("Mutant", "name file old new what tests", defaults=(None,))

SHIM_MUTANTS = [
    # The stack: what is lent, added and given back; the launcher's stack for a loader by hand.
    Mutant(
        "launcher-auxv-one-pair-late", "stack.c",
        "    *out++ = 0;\n    for (;; auxv += 2) {\n",
        "    *out++ = 0;\n    auxv += 2;\n    for (;; auxv += 2) {\n",
        "The launcher copies the auxv one pair late: the loader and the program lose the kernel's first "
        "entry (the vDSO's address on x86-64).",
    ),
    Mutant(
        "launcher-auxv-no-at-null", "stack.c",
        "        *out++ = auxv[0];\n        *out++ = value;\n        if (auxv[0] == AT_NULL)\n            break;\n",
        "        if (auxv[0] == AT_NULL)\n            break;\n        *out++ = auxv[0];\n        *out++ = value;\n",
        "The launcher writes no AT_NULL pair after the auxv it copies: whoever walks it reads what lies above.",
    ),
    Mutant(
        "added-entries-misalign-the-stack", "stack.h",
        "#define NIXLD_ADDED_ENTRIES (16 / sizeof(unsigned long))\n",
        "#define NIXLD_ADDED_ENTRIES (8 / sizeof(unsigned long))\n",
        "With no slot to lend, the shim adds 8 bytes below the kernel's stack: the program starts with its "
        "stack pointer 8 mod 16.",
    ),
    Mutant(
        "added-entries-not-given-back-as-ignored-pairs", "stack.c",
        "            words[i] = AT_IGNORE;\n",
        "",
        "The added entries are not turned into AT_IGNORE pairs: start code that walks past envp reads a "
        "pointer as an auxv type.",
    ),
    Mutant(
        "added-entries-drop-the-last-variable", "stack.c",
        "(nixld_size)((unsigned long *)stack->auxv - from) - 1;",
        "(nixld_size)((unsigned long *)stack->auxv - from) - 2;",
        "Adding entries moves one word too few: the caller's last variable is lost under an added entry.",
    ),
    Mutant(
        "only-the-first-ld-library-path-lent", "stack.c",
        "    if (last != first)\n        lend(loan, 1, last, entry);\n",
        "",
        "Only the first of several LD_LIBRARY_PATH entries is lent, while glibc's loader reads the last.",
    ),
    Mutant(
        "only-the-last-ld-library-path-lent", "stack.c",
        "    lend(loan, 0, first, entry);\n    if (last != first)\n        lend(loan, 1, last, entry);\n",
        "    lend(loan, 0, last, entry);\n",
        "Only the last of several LD_LIBRARY_PATH entries is lent, while musl's loader reads the first.",
    ),
    Mutant(
        "at-entry-not-given-back", "stack.c",
        "    *loan->entry = loan->program_entry;\n",
        "",
        "The trampoline does not put AT_ENTRY back: the program's auxv names the trampoline as its entry.",
    ),
    Mutant(
        "lent-slot-not-given-back", "stack.c",
        "            *loan->slots[i] = loan->originals[i];\n",
        "            (void)loan->originals[i];\n",
        "The trampoline does not put the lent envp slots back: the program and its children see the "
        "loader's LD_LIBRARY_PATH.",
    ),
    Mutant(
        "launcher-at-base-kept", "stack.c",
        "        case AT_BASE: value = 0; break;\n",
        "",
        "The launcher passes the kernel's AT_BASE to a loader it starts as if by hand.",
    ),
    # shim.c and launcher.c: what is decided there.
    Mutant(
        "missing-default-dir-lent", "shim.c",
        "        return directory_exists(library_path);\n",
        "        return directory_exists(library_path) || 1;\n",
        "nix-ld's default library directory is lent to the loader (and its library constructors) where it "
        "does not exist.",
    ),
    Mutant(
        "at-base-not-pointed-at-the-loader", "shim.c",
        "    nixld_auxv_entry(launch.stack.auxv, AT_BASE)[1] = loader.base;\n",
        "",
        "AT_BASE keeps the shim's base: a loader that relocates itself from it (musl's) goes wrong.",
    ),
    Mutant(
        "secure-message-names-the-program", "shim.c",
        "        add_text(line, \"a set-user-ID or set-group-ID program: \");\n        return;\n",
        "        add_text(line, \"a set-user-ID or set-group-ID program: \");\n",
        "In secure mode a message repeats the program's path, which the caller chose.",
    ),
    Mutant(
        "advice-names-the-2-x-spelling", "shim.c",
        "    add_text(line, \": set \");\n    add_value(line, variable.data, variable.length);\n",
        "    add_text(line, \": set \");\n    add_text(line, variable.length > 6 ? \"NIX_LD_\" NIXLD_SYSTEM : \"NIX_LD\");\n",
        "A wrong loader named in nix-ld 1.x's spelling is reported with nix-ld 2.x's: the message names a variable "
        "that is not set.",
    ),
    Mutant(
        "help-taken-for-a-program", "shim.c",
        "    if (argc < 2 || equal_strings(argv[1], \"--help\") || equal_strings(argv[1], \"-h\")) {\n",
        "    if (argc < 2) {\n",
        "The shim run as `SHIM --help` starts a program named --help through the loader (whose help it shows, or "
        "whose absence it complains of).",
    ),
    Mutant(
        "version-left-to-the-loader", "shim.c",
        "    if (equal_strings(argv[1], \"--version\") || equal_strings(argv[1], \"-V\")) {\n",
        "    if (0) {\n",
        "The shim run as `SHIM --version` shows the loader's version as its own.",
    ),
    Mutant(
        "missing-loader-is-not-found", "runtime.h",
        "#define EXIT_CANNOT_EXECUTE 126\n",
        "#define EXIT_CANNOT_EXECUTE 127\n",
        "A program whose loader is missing exits 127, the status of a program that was not found.",
    ),
    Mutant(
        "launcher-missing-loader-is-not-found", "launcher.c",
        "    exit_group(EXIT_CANNOT_EXECUTE);\n",
        "    exit_group(error == -13 || error == -8 ? 126 : 127);\n",
        "A wrapper whose loader is missing exits 127, the status of a program that was not found.",
    ),
    Mutant(
        "launcher-ignores-at-secure", "launcher.c",
        "    int secure = nixld_auxv_value(stack.auxv, AT_SECURE) != 0;\n",
        "    int secure = nixld_auxv_value(stack.auxv, AT_SECURE) == 42;\n",
        "The launcher ignores AT_SECURE: a set-user-ID wrapper joins its caller's LD_LIBRARY_PATH and maps "
        "the loader itself.",
    ),
    Mutant(
        "launcher-secure-joins-the-callers-path", "launcher.c",
        "    if (!secure)\n        callers = nixld_getenv_last(stack.envp, \"LD_LIBRARY_PATH\");\n",
        "    callers = nixld_getenv_last(stack.envp, \"LD_LIBRARY_PATH\");\n",
        "A set-user-ID wrapper joins its caller's LD_LIBRARY_PATH to the loader's --library-path.",
    ),
    Mutant(
        "launcher-keeps-what-glibc-removes", "launcher.c",
        "            nixld_drop_unsecure_variables(stack.envp);\n",
        "            (void)stack;\n",
        "A set-user-ID wrapper hands glibc's loader, started by hand, variables it must remove itself "
        "(and asserts over).",
    ),
    # contract.c: nix-ld's environment contract, and glibc's secure-mode list.
    Mutant(
        "ld-library-path-read-first", "contract.c",
        "    settings->ld_library_path = nixld_getenv_last(envp, \"LD_LIBRARY_PATH\");\n",
        "    settings->ld_library_path = nixld_getenv(envp, \"LD_LIBRARY_PATH\");\n",
        "The shim builds its path from the first LD_LIBRARY_PATH entry, while glibc's loader reads the last.",
    ),
    Mutant(
        "nix-dirs-split-on-semicolon", "contract.c",
        "    return append_entries(settings->nix_library_path, ',', out, used, capacity);\n",
        "    return append_entries(settings->nix_library_path, ';', out, used, capacity);\n",
        "NIX_LD_LIBRARY_PATH is split on ':' and ';' (LD_LIBRARY_PATH's separators) rather than ':' and ','.",
    ),
    Mutant(
        "empty-entries-kept", "contract.c",
        "        if (length == 0)\n            continue;\n",
        "",
        "Empty library path entries are kept (as '::'), which glibc reads as the working directory.",
    ),
    Mutant(
        "generic-library-path-wins", "contract.c",
        "            break;\n        }\n    }\n    settings->ld_library_path",
        "        }\n    }\n    settings->ld_library_path",
        "NIX_LD_LIBRARY_PATH overrides NIX_LD_LIBRARY_PATH_{system} when both are set.",
    ),
    Mutant(
        "every-trailing-newline-stripped", "contract.c",
        "        if (value.length && value.data[value.length - 1] == '\\n')\n",
        "        while (value.length && value.data[value.length - 1] == '\\n')\n",
        "Every trailing newline of NIX_LD is stripped, not just the one nix-support/dynamic-linker ends in.",
    ),
    Mutant(
        "nix-ld-1-spelling-ignored", "contract.c",
        "    if (!found[0].value.data)\n        found[0] = variable(envp, nixld_system_variable(name, base, system, '-'));\n",
        "",
        "nix-ld 1.x's spelling (NIX_LD_x86_64-linux) is not read: environments set for nix-ld 1.x lose their loader.",
    ),
    Mutant(
        "nix-ld-1-spelling-wins", "contract.c",
        "    found[0] = variable(envp, nixld_system_variable(name, base, system, '_'));\n"
        "    if (!found[0].value.data)\n        found[0] = variable(envp, nixld_system_variable(name, base, system, '-'));\n",
        "    found[0] = variable(envp, nixld_system_variable(name, base, system, '-'));\n"
        "    if (!found[0].value.data)\n        found[0] = variable(envp, nixld_system_variable(name, base, system, '_'));\n",
        "nix-ld 1.x's spelling wins over 2.x's (NIX_LD_x86_64_linux) where both are set.",
    ),
    Mutant(
        "empty-nix-ld-2-spelling-passed-over", "contract.c",
        "    if (!found[0].value.data)\n",
        "    if (!found[0].value.length)\n",
        "An empty NIX_LD_x86_64_linux lets nix-ld 1.x's NIX_LD_x86_64-linux through, where 2.x's spelling is in the "
        "environment and must win.",
    ),
    Mutant(
        "nix-ld-1-spelling-at-the-first-underscore", "contract.c",
        "        if (*system == '_')\n",
        "        if (*system == '_' && !last_underscore)\n",
        "nix-ld 1.x's spelling is made at the system's first '_' (NIX_LD_x86-64_linux), not its last.",
    ),
    Mutant(
        "secure-mode-reads-the-environment", "contract.c",
        "        settings->nix_library_path = absent;\n        return;\n",
        "        settings->nix_library_path = absent;\n",
        "In secure mode (AT_SECURE) the caller's NIX_LD and library variables are read.",
    ),
    Mutant(
        "secure-mode-reads-the-log-level", "contract.c",
        "    if (secure) {\n",
        "    if (secure) {\n        read_log_level(envp, settings);\n",
        "In secure mode NIX_LD_LOG is read, so the caller decides what is said.",
    ),
    Mutant(
        "tmpdir-left-to-glibc", "contract.c",
        "RES_OPTIONS\\0TMPDIR\\0TZDIR\\0",
        "RES_OPTIONS\\0TZDIR\\0",
        "TMPDIR is missing from the variables a set-user-ID launcher removes: glibc's loader started by "
        "hand asserts over it.",
    ),
    # load.c: the loader's check and mapping.
    Mutant(
        "fifo-opened-blocking", "load.c",
        "(long)path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);",
        "(long)path, O_RDONLY | O_CLOEXEC);",
        "The loader is opened blocking: a FIFO named as NIX_LD hangs the program for ever.",
    ),
    Mutant(
        "non-regular-loader-accepted", "load.c",
        "    if ((status.mode & S_IFMT) != S_IFREG)\n",
        "    if (status.mode == 0xffff)\n",
        "A loader that is not a regular file (a directory, a device) is read as one.",
    ),
    Mutant(
        "non-executable-loader-accepted", "load.c",
        "    long executable = nixld_syscall3(NIXLD_SYS_faccessat, AT_FDCWD, (long)path, X_OK);\n",
        "    long executable = 0;\n",
        "A loader without execute permission, or on a noexec mount, is mapped where the kernel would "
        "refuse it.",
    ),
    Mutant(
        "filesz-over-memsz", "load.c",
        "        if (segment->p_filesz > segment->p_memsz || end < segment->p_vaddr || end > -page_size ||\n",
        "        if (end < segment->p_vaddr || end > -page_size ||\n",
        "A loadable segment with more bytes in the file than in memory is accepted.",
    ),
    Mutant(
        "last-page-wraps-around", "load.c",
        " || end < segment->p_vaddr || end > -page_size ||\n",
        " || end < segment->p_vaddr ||\n",
        "A segment whose last page wraps around the address space is accepted: the reservation is too "
        "small and a segment is mapped with MAP_FIXED outside it.",
    ),
    Mutant(
        "segments-out-of-order", "load.c",
        "        previous_end = end;\n",
        "",
        "Out-of-order and overlapping PT_LOAD segments are accepted (and mapped over one another).",
    ),
    Mutant(
        "segment-past-end-of-file", "load.c",
        "            segment->p_filesz > file_size - segment->p_offset ||\n",
        "",
        "A loadable segment that extends past the end of the file is accepted (SIGBUS when touched).",
    ),
    Mutant(
        "entry-in-zero-fill", "load.c",
        "            header->e_entry - segment->p_vaddr < segment->p_filesz)\n",
        "            header->e_entry - segment->p_vaddr < segment->p_memsz)\n",
        "An entry point in a segment's zero fill is accepted: the process executes zero pages.",
    ),
    Mutant(
        "other-machine-accepted", "load.c",
        "    if (header->e_ident[5] != 1 || header->e_machine != NIXLD_ELF_MACHINE)\n",
        "    if (header->e_ident[5] != 1)\n",
        "A loader of another machine (of the same class) is not refused as such.",
    ),
    Mutant(
        "pt-interp-accepted", "load.c",
        "        if (segment->p_type == PT_INTERP)\n"
        "            return fault(loader, \"is not an ELF program loader (it is a dynamically linked program)\", 0);\n",
        "",
        "A file with a PT_INTERP (a dynamically linked program) is not refused as a loader.",
    ),
    Mutant(
        "static-pie-flag-mistyped", "load.h",
        "#define DF_1_PIE 0x08000000\n",
        "#define DF_1_PIE 0x80000000\n",
        "DF_1_PIE's value is mistyped, so a static-pie program passes for a loader.",
    ),
    Mutant(
        "loader-fd-left-open", "load.c",
        "    nixld_syscall3(NIXLD_SYS_close, loader->fd, 0, 0);\n    loader->fd = -1;\n    return 0;\n}\n",
        "    return 0;\n}\n",
        "The loader's file descriptor is left open: every program started through the shim or the launcher "
        "inherits it.",
    ),
    Mutant(
        "bss-tail-not-zeroed", "load.c",
        "                memset((void *)file_end, 0, file_pages_end - file_end);\n",
        "                (void)file_pages_end;\n",
        "The rest of a writable segment's last file page is not zeroed: the loader's .bss starts with "
        "whatever follows in the file.",
    ),
    Mutant(
        "read-only-zero-fill-cleared", "load.c",
        "segment->p_filesz && (prot & PROT_WRITE))\n",
        "segment->p_filesz && (prot & PROT_READ))\n",
        "The zero fill of a read-only segment's last file page is cleared, which the kernel does not do.",
    ),
    # message.c: one bounded line.
    Mutant(
        "message-cut-one-byte-late", "message.c",
        "length > NIXLD_LINE_LIMIT - ROOM_FOR_THE_END - line->length) {",
        "length > NIXLD_LINE_LIMIT - ROOM_FOR_THE_END + 1 - line->length) {",
        "A line is cut one byte late: its end is written past the buffer.",
    ),
    Mutant(
        "long-values-shown-whole", "message.c",
        "    if (total <= NIXLD_VALUE_LIMIT) {\n",
        "    if (total <= NIXLD_VALUE_LIMIT || length < 100000) {\n",
        "A long value the caller chose is shown whole (up to the line's end).",
    ),
    Mutant(
        "control-characters-not-escaped", "message.c",
        "    return byte < 0x20 || byte == 0x7f;\n",
        "    return byte == 0x7f;\n",
        "Control characters in a value reach the line as they are: a newline starts a second line.",
    ),
    Mutant(
        "cut-splits-a-character", "message.c",
        "        line->length = whole_characters((const unsigned char *)line->text, line->length);\n",
        "",
        "A line cut at its limit may end in the middle of a UTF-8 character.",
    ),
    # arch/: the hand-over.
    Mutant(
        "aarch64-trampoline-jumps-to-the-exit-function", "arch/aarch64.h",
        "            \"    mov x16, x0\\n\"",
        "            \"    mov x16, x19\\n\"",
        "On aarch64 the trampoline jumps to the loader's exit function instead of the program's entry.",
    ),
]

# The test files that concern each part of the Python: what a Python mutant runs unless --tests
# says otherwise (`--tests tests` runs the whole suite).
CONFIG_TESTS = ["tests/test_config.py", "tests/test_env_properties.py", "tests/test_plan.py"]
PLAN_TESTS = ["tests/test_plan.py", "tests/test_env_properties.py", "tests/test_cli.py", "tests/test_end_to_end.py"]
RUN_TESTS = ["tests/test_cli.py", "tests/test_end_to_end.py"]
ELF_TESTS = ["tests/test_elf.py", "tests/test_plan.py", "tests/test_inspect.py"]
INSPECT_TESTS = ["tests/test_inspect.py"]
DOCTOR_TESTS = ["tests/test_doctor.py"]
FIND_LIBS_TESTS = ["tests/test_find_libs.py"]
WRAP_TESTS = ["tests/test_wrap.py"]

PYTHON_MUTANTS = [
    # wrap.py: what the wrappers say, in sh and in Nix.
    Mutant(
        "nix-string-leaves-interpolation", "wrap.py",
        '.replace(b\'"\', b\'\\\\"\').replace(b"${", b"\\\\${")',
        '.replace(b\'"\', b\'\\\\"\')',
        "`${` is not escaped in a Nix string: a path or directory holding it is interpolated by Nix.",
        WRAP_TESTS,
    ),
    Mutant(
        "sh-wrapper-adds-an-empty-entry", "wrap.py",
        "b'\"${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}\"'",
        "b'\"${LD_LIBRARY_PATH}:\"'",
        "The sh wrapper puts `:` after an unset LD_LIBRARY_PATH: the library path starts with an empty "
        "entry, which glibc searches as the current directory.",
        WRAP_TESTS,
    ),
    Mutant(
        "sh-wrapper-directories-unquoted", "wrap.py",
        " + shell_quote(fixed) if fixed",
        " + fixed if fixed",
        "The sh wrapper writes the library directories unquoted: one with a space, `$` or `;` in its name "
        "is split, expanded or run.",
        WRAP_TESTS,
    ),
    # doctor.py
    Mutant(
        "doctor-silent-on-relative-dirs", "doctor/findings.py",
        "        if directory[\"relative\"]:\n"
        "            yield Finding(WARNING, \"library-dirs\", f\"{shown} is relative: it is searched from whatever \"\n"
        "                          \"directory the program starts in\", "
        "f\"write it as an absolute path in {source}\")\n",
        "",
        "doctor no longer warns of a relative NIX_LD library directory, searched from wherever the program "
        "starts.",
        DOCTOR_TESTS,
    ),
    Mutant(
        "doctor-relative-only-with-dot", "doctor/facts.py",
        "\"relative\": not directory.startswith(b\"/\")",
        "\"relative\": directory.startswith(b\".\")",
        "doctor takes only `./lib` or `../lib` for a relative library directory, not `lib`.",
        DOCTOR_TESTS,
    ),
    Mutant(
        "doctor-relative-rpath-entries-missed", "doctor/facts.py",
        "        bad = [entry for entry in entries if not entry.startswith((b\"/\", b\"$\"))]\n",
        "        bad = [entry for entry in entries if not entry]\n",
        "doctor names a program's empty RPATH/RUNPATH entries but not its relative ones, which also mean "
        "the current directory.",
        DOCTOR_TESTS,
    ),
    # findlibs.py
    Mutant(
        "find-libs-ties-go-alphabetically", "findlibs.py",
        "(scores[d][0], -len(scores[d][3]), len(d), d)",
        "(scores[d][0], -len(scores[d][3]), d)",
        "find-libs breaks a tie between directories that provide as much by name, not by the shorter path.",
        FIND_LIBS_TESTS,
    ),
    Mutant(
        "find-libs-any-tree-is-a-vendor-tree", "findlibs.py",
        "    return None if directory in NOT_A_VENDOR_TREE else directory\n",
        "    return directory\n",
        "find-libs takes /usr (for a program in /usr/bin) or /opt for a program's own tree, walks it and "
        "prefers it.",
        FIND_LIBS_TESTS,
    ),
    Mutant(
        "find-libs-class-ignored", "findlibs.py",
        "            if (candidate.elf_class, candidate.machine) == fits:\n",
        "            if candidate.machine == fits[1]:\n",
        "find-libs offers a library of the right machine but the wrong class (x32 for x86-64).",
        FIND_LIBS_TESTS,
    ),
    # glibc.py: the loader's cache and its hardware-capability subdirectories.
    Mutant(
        "cache-entries-of-any-class", "glibc.py",
        "            if wanted is not None and flags != wanted:\n                continue\n",
        "",
        "An ld.so.cache entry of another class or machine (x32, i386) is taken for the program's.",
        INSPECT_TESTS,
    ),
    Mutant(
        "cache-plain-entry-before-hwcaps", "glibc.py",
        "                rank = len(hwcaps)\n",
        "                rank = -1\n",
        "The cache's plain entry for a library wins over its entries in glibc-hwcaps subdirectories.",
        INSPECT_TESTS,
    ),
    Mutant(
        "hwcaps-ranked-lowest-first", "glibc.py",
        "                hwcaps.append(name)\n",
        "                hwcaps.insert(0, name)\n",
        "The glibc-hwcaps subdirectories are ranked in the reverse of the loader's priority (x86-64-v2 "
        "before x86-64-v4).",
        INSPECT_TESTS,
    ),
    Mutant(
        "hwcaps-unsupported-searched", "glibc.py",
        "            if b\"searched\" not in notes:\n                continue\n",
        "",
        "Subdirectories the loader lists as not searched (unsupported by the CPU, or masked) are searched.",
        INSPECT_TESTS,
    ),
    Mutant(
        "legacy-subdirs-smallest-first", "glibc.py",
        "    for mask in range((1 << len(parts)) - 1, 0, -1):\n",
        "    for mask in range(1, 1 << len(parts)):\n",
        "The legacy capability subdirectories are tried single names first, not tls/PLATFORM first.",
        INSPECT_TESTS,
    ),
    Mutant(
        "lib-token-without-multiarch", "glibc.py",
        "                return b\"/\".join(parts[index:])\n",
        "                return parts[index]\n",
        "$LIB expands to `lib`, not `lib/x86_64-linux-gnu`, on a multiarch glibc.",
        INSPECT_TESTS,
    ),
    # resolve.py: the search order.
    Mutant(
        "rpath-used-beside-runpath", "resolve.py",
        "        if requester.object.runpath is None:\n",
        "        if True:\n",
        "DT_RPATH is searched even for an object that has a DT_RUNPATH.",
        INSPECT_TESTS,
    ),
    Mutant(
        "nodeflib-ignored", "resolve.py",
        "        if requester.object.flags_1 & DF_1_NODEFLIB:\n            return None\n",
        "",
        "The needs of a DF_1_NODEFLIB object are looked for in the cache and the system directories.",
        INSPECT_TESTS,
    ),
    Mutant(
        "other-abi-libraries-taken", "resolve.py",
        "        if abi != self.abi:\n",
        "        if abi[2] != self.abi[2]:\n",
        "A library of the right machine but the other class (a 32-bit one for an x86-64 program) is taken.",
        INSPECT_TESTS,
    ),
    # loader.py: finding the program, the environment, the library path.
    Mutant(
        "path-takes-a-readable-not-an-executable", "loader.py",
        "        if os.access(files.at(candidate), os.X_OK):\n",
        "        if os.access(files.at(candidate), os.R_OK):\n",
        "A bare name resolves to the first readable file on PATH, before an executable one later on PATH.",
        PLAN_TESTS,
    ),
    Mutant(
        "empty-path-entry-is-root", "loader.py",
        "        candidate = (directory or b\".\") + b\"/\" + name\n",
        "        candidate = directory + b\"/\" + name\n",
        "An empty PATH entry looks in / rather than in the current directory.",
        PLAN_TESTS,
    ),
    Mutant(
        "plan-reads-the-first-ld-library-path", "loader.py",
        "    library_path = ld_library_path_entry(entries)\n",
        "    library_path = variables.get(b\"LD_LIBRARY_PATH\")\n",
        "Of two LD_LIBRARY_PATH entries the plan uses the first, as getenv() does, while glibc's loader "
        "reads the last.",
        PLAN_TESTS,
    ),
    Mutant(
        "getenv-finds-the-last", "loader.py",
        "            variables.setdefault(name, value)\n",
        "            variables[name] = value\n",
        "Of two entries with one name (NIX_LD twice) the last decides, while getenv() finds the first.",
        PLAN_TESTS,
    ),
    Mutant(
        "library-path-l-before-ld-library-path", "loader.py",
        "        config.split_ld_library_path(env.get(b\"LD_LIBRARY_PATH\")), config.split_library_arguments(libs), nix_dirs\n",
        "        config.split_library_arguments(libs), config.split_ld_library_path(env.get(b\"LD_LIBRARY_PATH\")), nix_dirs\n",
        "The -L directories come before the caller's LD_LIBRARY_PATH, unlike in the documented order.",
        PLAN_TESTS,
    ),
    Mutant(
        "set-group-id-not-warned", "loader.py",
        "    if file_mode & (stat.S_ISUID | stat.S_ISGID):\n        decisions.append",
        "    if file_mode & stat.S_ISUID:\n        decisions.append",
        "A set-group-ID program started through the loader loses its privilege without a warning.",
        PLAN_TESTS,
    ),
    Mutant(
        "bare-relative-program-given-to-the-loader", "loader.py",
        "    return b\"./\" + program\n",
        "    return program\n",
        "A relative program path without a slash in front (`tool`, `bin/tool`) is given to the loader as "
        "it is: `tool` is searched on the library path.",
        PLAN_TESTS,
    ),
    # config.py: nix-ld's variables.
    Mutant(
        "generic-nix-ld-wins", "config.py",
        "    return (system_variable(env, base, system), base)\n",
        "    return (base, system_variable(env, base, system))\n",
        "NIX_LD (and NIX_LD_LIBRARY_PATH) win over NIX_LD_{system} when both are set.",
        CONFIG_TESTS,
    ),
    Mutant(
        "nix-ld-library-path-not-split-on-comma", "config.py",
        "    return [entry for entry in value.replace(b\",\", b\":\").split(b\":\") if entry]\n",
        "    return [entry for entry in value.split(b\":\") if entry]\n",
        "NIX_LD_LIBRARY_PATH is split on `:` only, not on `,` too as nix-ld's docs have it.",
        CONFIG_TESTS,
    ),
    Mutant(
        "ld-library-path-empty-entries-kept", "config.py",
        "    return [entry for entry in value.replace(b\";\", b\":\").split(b\":\") if entry]\n",
        "    return value.replace(b\";\", b\":\").split(b\":\")\n",
        "The caller's empty LD_LIBRARY_PATH entries reach the loader's --library-path, where they mean "
        "the current directory.",
        CONFIG_TESTS,
    ),
    Mutant(
        "empty-setting-counts-as-set", "config.py",
        "    return value if value else None\n",
        "    return value\n",
        "An empty NIX_LD (or NIX_LD_LIBRARY_PATH) counts as set, rather than unset as nix-ld counts it.",
        CONFIG_TESTS,
    ),
    # elf.py: the header checks.
    Mutant(
        "segment-past-the-end-accepted", "elf.py",
        "        if segment.offset + segment.file_size > file_size:\n",
        "        if segment.offset > file_size:\n",
        "A loadable segment that starts inside the file but ends past it is accepted (SIGBUS when touched).",
        ELF_TESTS,
    ),
    Mutant(
        "program-header-size-unchecked", "elf.py",
        "    if e_phnum and e_phentsize != phdr_size:\n",
        "    if e_phnum and e_phentsize < phdr_size:\n",
        "Program headers of a larger size than the class's are read as if they were of its size.",
        ELF_TESTS,
    ),
    Mutant(
        "interpreter-nul-anywhere", "elf.py",
        "    if data[-1] != 0:\n",
        "    if 0 not in data:\n",
        "An interpreter path whose NUL is not its last byte is accepted, where the kernel refuses it.",
        ELF_TESTS,
    ),
    Mutant(
        "big-endian-read-as-little", "elf.py",
        "    elf_class, little_endian = read_identification(head)\n    order = \"<\" if little_endian else \">\"\n",
        "    elf_class, little_endian = read_identification(head)\n    order = \"<\"\n",
        "A big-endian file's header is read as little-endian: its machine and program headers are garbage.",
        ELF_TESTS,
    ),
    Mutant(
        "no-loadable-segment-accepted", "elf.py",
        "    if not loads:\n        raise ElfError",
        "    if loads is None:\n        raise ElfError",
        "A program with no PT_LOAD segment is accepted: the kernel maps nothing and jumps into the void.",
        ELF_TESTS,
    ),
    # commands/run.py: the options, parsed by hand.
    Mutant(
        "double-dash-is-the-program", "commands/run.py",
        "        if arg == \"--\":\n            index += 1\n            break\n",
        "        if arg == \"--\":\n            break\n",
        "`nixld run -- PROGRAM` takes `--` for the program.",
        RUN_TESTS,
    ),
    Mutant(
        "attached-l-needs-two-characters", "commands/run.py",
        "    elif arg.startswith(\"-L\") and len(arg) > 2:\n",
        "    elif arg.startswith(\"-L\") and len(arg) > 3:\n",
        "`-Lx` (a one-character directory attached to -L) takes the next argument as the directory.",
        RUN_TESTS,
    ),
    Mutant(
        "a-program-named-dash-is-an-option", "commands/run.py",
        "        elif arg.startswith(\"-\") and arg != \"-\":\n",
        "        elif arg.startswith(\"-\"):\n",
        "A program named `-` is refused as an unknown option.",
        RUN_TESTS,
    ),
    Mutant(
        "run-plans-with-pythons-environment", "commands/run.py",
        "    env = initial_environment()\n",
        "    from nixld.loader import environment_entries\n    env = environment_entries(os.environb)\n",
        "`nixld run` plans with Python's os.environ, with the LC_CTYPE CPython adds (PEP 538) and the last "
        "of two entries with one name, not the caller's environment block.",
        RUN_TESTS,
    ),
]

MUTANTS = SHIM_MUTANTS + PYTHON_MUTANTS

# ---------------------------------------------------------------------------------------------
# The engine.

CHECKOUT = Path(__file__).resolve().parent.parent
PACKAGE = Path("nixld")
SHIM_DIR = PACKAGE / "shim"
SHIM_TESTS = ["tests/test_shim.py", "tests/test_shim_contract.py", "tests/test_shim_loader.py",
                 "tests/test_shim_c_units.py", "tests/test_shim_security.py", "tests/test_shim_fuzz.py",
                 "tests/test_wrap.py", "tests/test_musl.py", "tests/test_nixos_world.py"]
WHOLE_SUITE = ["tests"]
# One Hypothesis seed for the baseline and every mutant: the property tests try the examples the
# baseline passed, so that what they catch is the mutant's doing, not a new random example's (a
# shim fuzz example the baseline never met has failed mutants of the Python this way).
PYTEST_OPTIONS = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0"]
# What the caller's environment must not pass to the tests: strict mode would turn skips into
# failures, and a PYTHONPATH could put a source tree before the installed package.
UNSET = ["NIXLD_TESTS_STRICT", "PYTHONPATH", "PYTHONHOME"]

Outcome = namedtuple("Outcome", "name verdict first_failure seconds")


class HarnessError(Exception):
    """Something that stops the whole run (not a mutant's outcome)."""


def say(*parts) -> None:
    print(*parts, flush=True)


def tracked_files(checkout: Path) -> list[str]:
    result = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z"], capture_output=True, check=True)
    return [os.fsdecode(name) for name in result.stdout.split(b"\0") if name]


def copy_checkout(checkout: Path, files: list[str], destination: Path) -> Path:
    """The tracked files of `checkout`, as they are in its working tree, copied to `destination`."""
    for name in files:
        source = checkout / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def is_python(mutant: Mutant) -> bool:
    return mutant.file.endswith(".py")


def source(mutant: Mutant) -> Path:
    """The mutant's file, relative to the checkout."""
    return (PACKAGE if is_python(mutant) else SHIM_DIR) / mutant.file


def tests_for(mutant: Mutant, chosen: list[str] | None) -> list[str]:
    """The test files a mutant runs: those chosen with --tests, else a C mutant's the shim
    tests, a Python mutant's its own (or the whole suite)."""
    if chosen:
        return chosen
    if is_python(mutant):
        return mutant.tests or WHOLE_SUITE
    return SHIM_TESTS


def why_it_does_not_apply(mutant: Mutant, root: Path) -> str | None:
    path = root / source(mutant)
    if not path.is_file():
        return f"{source(mutant)} does not exist"
    count = path.read_text().count(mutant.old)
    if count != 1:
        return f"its text occurs {count} times in {source(mutant)}, not once"
    return None


def apply(mutant: Mutant, root: Path) -> None:
    path = root / source(mutant)
    path.write_text(path.read_text().replace(mutant.old, mutant.new, 1))


@contextmanager
def installed_in_place(mutant: Mutant, root: Path, package_dir: Path):
    """The installed package's copy of a Python mutant's file replaced by `root`'s for the
    duration, then put back byte for byte with its times, which keeps its compiled bytecode
    valid. Python takes that bytecode for a source of the same size and mtime (in seconds):
    the mutated copy's mtime is set two seconds past the original's, so that it is compiled."""
    installed = package_dir / source(mutant).relative_to(PACKAGE)
    original = installed.read_bytes()
    status = installed.stat()
    try:
        installed.write_bytes((root / source(mutant)).read_bytes())
        os.utime(installed, ns=(status.st_atime_ns, status.st_mtime_ns + 2_000_000_000))
        yield
    finally:
        installed.write_bytes(original)
        os.utime(installed, ns=(status.st_atime_ns, status.st_mtime_ns))


class Venv:
    """The virtualenv the tests run in: its python, and where its nixld's shims are."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.python = directory / "bin" / "python"

    def run_python(self, code: str, cwd: Path) -> str:
        result = subprocess.run([str(self.python), "-c", code], cwd=cwd, capture_output=True, text=True)
        if result.returncode != 0:
            raise HarnessError(f"{self.python} -c {code!r} failed:\n{result.stderr.strip()}")
        return result.stdout.strip()

    def install(self, source: Path, scratch: Path) -> None:
        if not self.python.exists():
            say(f"creating the virtualenv {self.directory}")
            subprocess.run([sys.executable, "-m", "venv", str(self.directory)], check=True)
        say(f"installing {source}[test] into {self.directory}")
        result = subprocess.run([str(self.python), "-m", "pip", "install", "-q", f"{source}[test]"], cwd=scratch,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise HarnessError(f"pip install failed:\n{result.stdout}{result.stderr}")

    def holds(self, checkout: Path, scratch: Path) -> bool:
        """Whether nixld is installed here with the checkout's Python modules, byte for byte."""
        if not self.python.exists():
            return False
        try:
            package_dir = self.package_dir(scratch)
        except HarnessError:
            return False
        for module in (checkout / PACKAGE).rglob("*.py"):
            installed = package_dir / module.relative_to(checkout / PACKAGE)
            if not installed.is_file() or installed.read_bytes() != module.read_bytes():
                say(f"{self.directory} holds another nixld than {checkout}'s")
                return False
        return True

    def package_dir(self, scratch: Path) -> Path:
        # From a scratch directory: from the checkout, Python would import the source tree.
        return Path(self.run_python("import os, nixld; print(os.path.dirname(nixld.__file__))", scratch))

    def compiler(self, scratch: Path) -> list[str]:
        """The compiler setup.py builds the shims with: build_ext's compiler_so[:1]."""
        code = ("import json, setuptools\n"
                "from distutils.ccompiler import new_compiler\n"
                "from distutils.sysconfig import customize_compiler\n"
                "c = new_compiler(); customize_compiler(c); print(json.dumps(c.compiler_so[:1]))")
        return json.loads(self.run_python(code, scratch))


def load_shim_build(root: Path, tag: str):
    """`root`'s nixld/_shim_build.py, loaded by its path (as setup.py loads it), so that it
    compiles `root`'s nixld/shim/ sources."""
    spec = importlib.util.spec_from_file_location(f"_shim_build_{tag}", root / "nixld" / "_shim_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_and_install(root: Path, compiler: list[str], package_dir: Path, scratch: Path, tag: str,
                      tolerated=()) -> dict[str, str]:
    """Build the shims and the launcher from `root` into `scratch`; unless something other than
    `tolerated` failed to build, put what was built and `root`'s nixld/shim/ sources into the
    installed package. Returns what failed, as build_shims says ("launcher" or a system)."""
    output = scratch / f"built-{tag}"
    failures = load_shim_build(root, tag).build_shims(compiler, str(output))
    if set(failures) - set(tolerated):
        return failures
    installed = package_dir / "shim"
    for source in (root / SHIM_DIR).rglob("*"):
        if source.is_file():
            target = installed / source.relative_to(root / SHIM_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for built in output.iterdir():
        shutil.copy2(built, installed / built.name)
    return failures


def test_environment(venv: Venv) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env["PATH"] = f"{venv.directory / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv.directory)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


PytestResult = namedtuple("PytestResult", "status output seconds timed_out")


def run_pytest(venv: Venv, root: Path, tests: list[str], scratch: Path, timeout: float,
               log: Path | None) -> PytestResult:
    """The tests of `root` run with the venv's python from a scratch directory (the tests refuse
    the project root), in a session of their own so that a timeout ends all they started."""
    cwd = scratch / "cwd"
    cwd.mkdir()
    command = [str(venv.python), "-m", "pytest", *PYTEST_OPTIONS, f"--basetemp={scratch / 'basetemp'}",
               *(str(root / test) for test in tests)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=test_environment(venv), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="backslashreplace",
                               start_new_session=True)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:
        # Ctrl-C reaches only the terminal's process group, which the tests have left.
        os.killpg(process.pid, signal.SIGKILL)
        raise
    if timed_out:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    if log:
        log.write_text(output)
    return PytestResult(process.returncode, output, time.monotonic() - started, timed_out)


def first_failure(output: str, root: Path, cwd: Path) -> str:
    """The first test pytest's short summary names as FAILED (or ERROR), by its node id
    relative to `root` (pytest names the file relative to its working directory, `cwd`)."""
    for line in output.splitlines():
        for kind in ("FAILED ", "ERROR "):
            if line.startswith(kind):
                node, _, _ = line[len(kind):].partition(" - ")
                file, separator, rest = node.partition("::")
                path = Path(os.path.normpath(cwd / file))
                if path.is_relative_to(root):
                    node = f"{path.relative_to(root)}{separator}{rest}"
                return node if kind == "FAILED " else f"ERROR {node}"
    return ""


def summary_counts(output: str) -> dict[str, int]:
    """pytest's last line ("210 passed, 3 skipped in 17.91s") as {"passed": 210, "skipped": 3}."""
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    return {kind: int(count) for count, kind in re.findall(r"(\d+) (\w+)", last)}


def run_baseline(venv, pristine, tests, build, compiler, package_dir, scratch, timeout, logs) -> dict[str, str]:
    """Build (when `build`: C mutants are to be run) and test the unmutated copy; stop the run
    unless it passes. Returns what could not be built even unmutated, which setup.py tolerates
    (a second system's shim): a mutant is stillborn when more fails to build."""
    failures = {}
    if build:
        shim_build = load_shim_build(pristine, "systems")
        required = {*shim_build.shim_systems()[:1], "launcher"}
        failures = build_and_install(pristine, compiler, package_dir, scratch, "baseline",
                                     tolerated=set(shim_build.shim_systems()) - required)
        if set(failures) & required:
            raise HarnessError(f"the unmutated shims cannot be built: {failures}")
        if failures:
            say(f"baseline: not built even unmutated (as setup.py allows): {failures}")
    (scratch / "baseline").mkdir()
    result = run_pytest(venv, pristine, tests, scratch / "baseline", timeout, logs and logs / "baseline.log")
    if result.timed_out or result.status != 0:
        tail = "\n".join(result.output.splitlines()[-40:])
        raise HarnessError(f"the unmutated tests do not pass (pytest exit status {result.status}"
                           f"{', timed out' if result.timed_out else ''}); nothing can be measured:\n{tail}")
    counts = summary_counts(result.output)
    say(f"baseline: {counts.get('passed', 0)} passed, {counts.get('skipped', 0)} skipped "
        f"in {result.seconds:.0f} s (what is skipped catches no mutant)")
    for line in result.output.splitlines():
        if line.startswith("SKIPPED"):
            say(f"  {line}")
    return failures


def run_mutant(mutant, venv, checkout, files, tests, compiler, package_dir, baseline_failures, scratch,
               timeout, logs) -> Outcome:
    """A C mutant is built into the installed package and tested; a Python mutant replaces its
    file in the installed package while the tests run. Either is stillborn when it does not
    build (compile, for Python)."""
    started = time.monotonic()
    root = copy_checkout(checkout, files, scratch / "checkout")
    apply(mutant, root)
    log = logs and logs / f"{mutant.name}.log"
    if is_python(mutant):
        try:
            compile((root / source(mutant)).read_bytes(), str(source(mutant)), "exec")
        except SyntaxError as error:
            return Outcome(mutant.name, "stillborn", f"{error.msg} (line {error.lineno})",
                           time.monotonic() - started)
        with installed_in_place(mutant, root, package_dir):
            result = run_pytest(venv, root, tests, scratch, timeout, log)
    else:
        failures = build_and_install(root, compiler, package_dir, scratch, mutant.name, tolerated=baseline_failures)
        new_failures = {key: value for key, value in failures.items() if key not in baseline_failures}
        if new_failures:
            complaint = "; ".join(f"{key}: {value}" for key, value in new_failures.items())
            return Outcome(mutant.name, "stillborn", complaint, time.monotonic() - started)
        result = run_pytest(venv, root, tests, scratch, timeout, log)
    seconds = time.monotonic() - started
    if result.timed_out:
        return Outcome(mutant.name, "caught", f"(timeout after {timeout:.0f} s)", seconds)
    if result.status == 0:
        return Outcome(mutant.name, "missed", "-", seconds)
    failure = first_failure(result.output, root, scratch / "cwd")
    return Outcome(mutant.name, "caught", failure or f"(pytest exit status {result.status})", seconds)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true",
                        help="print the mutants (those --kind and --only select) and what each plants, then stop")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--kind", choices=("c", "python"),
                        help="run only the shim's C mutants, or only the Python ones (default: both)")
    parser.add_argument("--keep-going", action="store_true",
                        help="report a mutant that does not apply as broken and run the others")
    parser.add_argument("--venv", type=Path, metavar="DIR",
                        help="use this virtualenv (created if missing; nixld installed into it unless it "
                             "already holds this checkout's) rather than a scratch one; its shims and "
                             "modules are put back at the end")
    parser.add_argument("--tests", nargs="+", metavar="FILE",
                        help="test files (or pytest node ids), relative to the checkout, for every mutant "
                             "(`tests`: the whole suite; default: for C mutants the shim-related ones, for a "
                             "Python mutant those its entry names)")
    parser.add_argument("--timeout", type=float, default=900, metavar="SECONDS",
                        help="per mutant; a timeout counts as caught (default: 900)")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep pytest's output for the baseline and each mutant in DIR/NAME.log")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    # A shell starts a background job with SIGINT ignored: SIGTERM ends the run as cleanly.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    names = [mutant.name for mutant in MUTANTS]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        say(f"mutants.py: mutant names used twice: {', '.join(sorted(duplicates))}")
        return 1
    selected = [mutant for mutant in MUTANTS
                if arguments.kind is None or is_python(mutant) == (arguments.kind == "python")]
    if arguments.only:
        unknown = [name for name in arguments.only if name not in names]
        if unknown:
            say(f"mutants.py: no mutant named {', '.join(unknown)} (see --list)")
            return 2
        selected = [mutant for mutant in selected if mutant.name in arguments.only]
    if not selected:
        say("mutants.py: no mutant is selected")
        return 2
    width = max(len(mutant.name) for mutant in selected)
    file_width = max(len(mutant.file) for mutant in selected)
    if arguments.list:
        for mutant in selected:
            say(f"{mutant.name:<{width}}  {mutant.file:<{file_width}}  {mutant.what}")
        return 0

    broken = {mutant.name: why for mutant in selected if (why := why_it_does_not_apply(mutant, CHECKOUT))}
    for name, why in broken.items():
        say(f"mutants.py: mutant {name} does not apply: {why}")
    if broken and not arguments.keep_going:
        say("mutants.py: the list of mutants is out of date with the code; fix it (or pass --keep-going)")
        return 1
    runnable = [mutant for mutant in selected if mutant.name not in broken]
    build = any(not is_python(mutant) for mutant in runnable)
    # The baseline runs every test file some mutant runs.
    baseline_tests = list(dict.fromkeys(test for mutant in runnable for test in tests_for(mutant, arguments.tests)))
    if set(WHOLE_SUITE) <= set(baseline_tests):
        baseline_tests = WHOLE_SUITE

    files = tracked_files(CHECKOUT)
    logs = arguments.logs.resolve() if arguments.logs else None
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nixld-mutants-") as scratch_name:
        scratch = Path(scratch_name)
        pristine = copy_checkout(CHECKOUT, files, scratch / "pristine")
        venv = Venv(arguments.venv.resolve() if arguments.venv else scratch / "venv")
        here = scratch / "here"
        here.mkdir()
        try:
            if not venv.holds(CHECKOUT, here):
                venv.install(pristine, here)
            package_dir = venv.package_dir(here)
            if package_dir.resolve().is_relative_to(CHECKOUT):
                # An editable install: mutants would be built, or written, into the checkout.
                raise HarnessError(f"{venv.directory} imports nixld from the checkout itself (pip install -e); "
                                   "give a virtualenv with a regular install, or none")
            compiler = venv.compiler(here) if build else []
        except HarnessError as error:
            say(f"mutants.py: {error}")
            return 1
        say(f"checkout {CHECKOUT}; virtualenv {venv.directory}"
            + (f"; compiler {' '.join(compiler)}" if build else ""))
        say(f"tests: {' '.join(arguments.tests) if arguments.tests else 'per mutant'}; baseline: "
            f"{' '.join(baseline_tests)}")
        say(f"NIXLD_TEST_NODE_WHEEL={os.environ.get('NIXLD_TEST_NODE_WHEEL', '(unset)')}")

        outcomes = []
        baseline_failures = {}
        try:
            baseline_failures = run_baseline(venv, pristine, baseline_tests, build, compiler, package_dir, scratch,
                                             arguments.timeout, logs)
            say("")
            for mutant in selected:
                if mutant.name in broken:
                    outcome = Outcome(mutant.name, "broken", broken[mutant.name], 0.0)
                else:
                    mutant_scratch = scratch / "mutants" / mutant.name
                    mutant_scratch.mkdir(parents=True)
                    outcome = run_mutant(mutant, venv, CHECKOUT, files, tests_for(mutant, arguments.tests), compiler,
                                         package_dir, baseline_failures, mutant_scratch, arguments.timeout, logs)
                    shutil.rmtree(mutant_scratch, ignore_errors=True)
                outcomes.append(outcome)
                say(f"{outcome.name:<{width}}  {outcome.verdict:<9}  {outcome.first_failure}  "
                    f"{outcome.seconds:.0f} s")
        except HarnessError as error:
            say(f"mutants.py: {error}")
            return 1
        finally:
            if build:
                build_and_install(pristine, compiler, package_dir, scratch, "restore", tolerated=baseline_failures)
                say(f"restored the unmutated shims and sources in {package_dir / 'shim'}")

    verdicts = [outcome.verdict for outcome in outcomes]
    counted = verdicts.count("caught") + verdicts.count("missed")
    say(f"\ncaught {verdicts.count('caught')} of {counted} ({verdicts.count('stillborn')} stillborn)"
        + (f"; {verdicts.count('broken')} broken (did not apply)" if "broken" in verdicts else ""))
    missed = [outcome.name for outcome in outcomes if outcome.verdict == "missed"]
    if missed:
        say(f"missed: {' '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
