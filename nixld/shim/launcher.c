/* nixld's compiled launcher: what `nixld wrap --format binary` copies, with the settings of one
 * program written into the copy. It starts the program exactly as `nixld run` would, with no
 * Python at run time:
 *
 *     LOADER --library-path DIRS --argv0 ARGV0 PROGRAM ARGS...
 *
 * where DIRS are the caller's LD_LIBRARY_PATH entries, then the directories fixed when the
 * launcher was made; the environment is passed on untouched. Rather than execve the loader,
 * which would cost a second exec, it maps the loader itself (as the shim does) and enters it
 * on a stack laid out as the kernel lays one out for a loader started by hand: that argv,
 * AT_ENTRY, AT_PHDR and AT_PHNUM the loader's own, AT_BASE 0. Freestanding, like the shim.
 */

#include "contract.h"
#include "load.h"
#include "runtime.h"

/* Where nixld wrap writes the settings: this mark, then loader, library directories (joined
 * with ':'), program and argv0 (empty: the launcher's own argv[0]), each ending in a NUL, then
 * "1" or "0" for whether the loader takes --argv0. Unset, the area holds the mark alone. */
#define SETTINGS_MARK "NIXLD-LAUNCHER-SETTINGS-1"
#define SETTINGS_SIZE 32768
__attribute__((used, aligned(16))) static const char settings[SETTINGS_SIZE] = SETTINGS_MARK;

static const char *next_field(const char *field)
{
    return field + length_of(field) + 1;
}

/* "nixld launcher: PROGRAM: WHAT DETAIL FAULT: ERROR", and the shell's status. */
__attribute__((noreturn)) static void fail(const char *program, const char *what, const char *detail, long error,
                                           const char *fault)
{
    struct line line = {.length = 0};
    add_text(&line, "nixld launcher: ");
    add_text(&line, program);
    add_text(&line, ": ");
    add_text(&line, what);
    add_text(&line, detail);
    if (fault) {
        add_text(&line, " ");
        add_text(&line, fault);
    }
    if (error) {
        add_text(&line, ": ");
        add_text(&line, error_text(error));
    }
    write_line(&line, 2);
    exit_group(error == -13 || error == -8 ? 126 : EXIT_CANNOT_START);
}

__attribute__((noreturn, used)) void nixld_launcher_main(unsigned long *stack)
{
    int argc = (int)stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;

    /* The compiler must read the settings from the file, not from the initializer above. */
    const char *field = settings;
    __asm__("" : "+r"(field));
    const char *loader = next_field(field);
    const char *directories = next_field(loader);
    const char *program = next_field(directories);
    const char *argv0 = next_field(program);
    int takes_argv0 = next_field(argv0)[0] == '1';
    const char *name = argc > 0 && argv[0] ? argv[0] : "launcher";
    if (!*loader || !*program)
        fail(name, "this launcher has no settings: make one with `nixld wrap --format binary PROGRAM`", "", 0, 0);

    struct nixld_string fixed = {directories, length_of(directories)};
    nixld_size length = nixld_join_library_path(nixld_getenv(envp, "LD_LIBRARY_PATH"), fixed, 0, 0);
    char *library_path = __builtin_alloca(length + 1);
    length = nixld_join_library_path(nixld_getenv(envp, "LD_LIBRARY_PATH"), fixed, library_path, length);
    library_path[length] = 0;

    char **loader_argv = __builtin_alloca((argc + NIXLD_BY_HAND_EXTRA) * sizeof(char *));
    int at = nixld_by_hand_argv(loader_argv, loader, library_path, takes_argv0 ? (*argv0 ? argv0 : name) : 0, program,
                                argv + 1, argc - 1);

    char **end = envp;
    while (*end)
        end++;
    unsigned long *auxv = (unsigned long *)(end + 1);
    unsigned long page_size = 4096;
    int secure = 0;
    for (unsigned long *entry = auxv; entry[0] != AT_NULL; entry += 2) {
        if (entry[0] == AT_PAGESZ)
            page_size = entry[1];
        if (entry[0] == AT_SECURE)
            secure = entry[1] != 0;
    }
    struct loader mapped;
    const char *fault = nixld_open_loader(loader, page_size, &mapped);
    if (!fault)
        fault = nixld_map_loader(&mapped, page_size);
    if (fault && !mapped.other_machine)
        fail(program, "its loader ", loader, mapped.error, fault);

    /* An ordinary execve of the loader for what this launcher cannot enter itself: a loader
     * of another machine (an i686 one: the kernel runs it), one whose program headers are
     * not in memory (musl finds its base through them), and secure mode (glibc started by
     * hand aborts there when LD_LIBRARY_PATH is set: it removes it from under its own feet). */
    if (fault || secure || !mapped.phdr) {
        long error = nixld_syscall3(NIXLD_SYS_execve, (long)loader, (long)loader_argv, (long)envp);
        fail(program, "cannot start its loader ", loader, error, 0);
    }

    unsigned long *auxv_end = auxv;
    while (*auxv_end != AT_NULL)
        auxv_end += 2;
    unsigned long words = 1 + (unsigned long)at + 1 + (unsigned long)(end - envp) + 1 + (unsigned long)(auxv_end + 2 - auxv);
    unsigned long *start = __builtin_alloca(words * sizeof(unsigned long) + 16);
    start = (unsigned long *)(((unsigned long)start + 15) & -16UL);
    unsigned long *out = start;
    *out++ = (unsigned long)at;
    for (int i = 0; i <= at; i++)
        *out++ = (unsigned long)loader_argv[i];
    for (char **variable = envp; variable <= end; variable++)
        *out++ = (unsigned long)*variable;
    for (unsigned long *entry = auxv; ; entry += 2) {
        unsigned long value = entry[1];
        switch (entry[0]) {
        case AT_PHDR: value = mapped.phdr; break;
        case AT_PHENT: value = sizeof(program_header); break;
        case AT_PHNUM: value = mapped.header.e_phnum; break;
        case AT_BASE: value = 0; break;
        case AT_ENTRY: value = mapped.base + mapped.header.e_entry; break;
        case AT_EXECFN: value = (unsigned long)loader; break;
        }
        *out++ = entry[0];
        *out++ = value;
        if (entry[0] == AT_NULL)
            break;
    }
    nixld_hand_over(mapped.base + mapped.header.e_entry, start);
}

NIXLD_ENTRY_STUB(nixld_launcher_main);
