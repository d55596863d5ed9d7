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
 *
 * Made set-user-ID or set-group-ID (secure mode, AT_SECURE), it takes nothing from its caller
 * but the arguments: DIRS are the fixed directories alone, and the loader gets the environment
 * without the variables glibc removes for such programs (see SECURITY.md).
 */

#include "contract.h"
#include "load.h"
#include "runtime.h"
#include "stack.h"

/* Where nixld wrap writes the settings: this mark, then loader, library directories (joined
 * with ':'), program and argv0 (empty: the launcher's own argv[0]), each ending in a NUL, then
 * "1" or "0" for whether the loader takes --argv0. Unset, the area holds the mark alone. */
#define SETTINGS_MARK "NIXLD-LAUNCHER-SETTINGS-1"
#define SETTINGS_SIZE 32768
__attribute__((used, aligned(16))) static const char settings[SETTINGS_SIZE] = SETTINGS_MARK;

static const char *next_field(const char *field)
{
    return field + nixld_length(field) + 1;
}

/* "nixld launcher: PROGRAM: WHAT DETAIL FAULT: ERROR", and the shell's status. */
__attribute__((noreturn)) static void fail(const char *program, const char *what, const char *detail, long error,
                                           const char *fault)
{
    struct line line;
    line_begin(&line);
    add_text(&line, "nixld launcher: ");
    add_value_text(&line, program);
    add_text(&line, ": ");
    add_text(&line, what);
    add_value_text(&line, detail);
    if (fault) {
        add_text(&line, " ");
        add_text(&line, fault);
    }
    if (error) {
        add_text(&line, ": ");
        add_text(&line, error_text(error));
    }
    write_line(&line, 2);
    exit_group(EXIT_CANNOT_EXECUTE);
}

__attribute__((noreturn, used)) void nixld_launcher_main(unsigned long *start)
{
    struct nixld_stack stack;
    nixld_read_stack(start, &stack);
    int argc = (int)start[0];
    char **argv = stack.argv;
    unsigned long page_size = nixld_auxv_value(stack.auxv, AT_PAGESZ);
    if (!page_size)
        page_size = 4096;
    int secure = nixld_auxv_value(stack.auxv, AT_SECURE) != 0;

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
        fail(secure ? "launcher" : name, "this launcher has no settings: make one with `nixld wrap --format binary PROGRAM`",
             "", 0, 0);

    struct nixld_string fixed = {directories, nixld_length(directories)};
    struct nixld_string callers = {0, 0};
    if (!secure)
        callers = nixld_getenv_last(stack.envp, "LD_LIBRARY_PATH");
    nixld_size length = nixld_join_library_path(callers, fixed, 0, 0);
    char *library_path = __builtin_alloca(length + 1);
    length = nixld_join_library_path(callers, fixed, library_path, length);
    library_path[length] = 0;

    /* The loader's stack, built in place: its argv first, then what nixld_lay_out_by_hand_stack
     * adds around it. */
    nixld_size words = nixld_by_hand_stack_words(argc + NIXLD_BY_HAND_EXTRA - 1, stack.envp, stack.auxv);
    unsigned long *loader_stack = __builtin_alloca(words * sizeof(unsigned long) + 16);
    loader_stack = (unsigned long *)(((unsigned long)loader_stack + 15) & -16UL);
    char **loader_argv = (char **)(loader_stack + 1);
    int loader_argc = nixld_by_hand_argv(loader_argv, loader, library_path,
                                         takes_argv0 ? (*argv0 ? argv0 : name) : 0, program, argv + 1, argc - 1);

    struct loader mapped;
    const char *fault = nixld_open_loader(loader, page_size, &mapped);
    if (!fault)
        fault = nixld_map_loader(&mapped, page_size);
    if (fault && !mapped.other_machine)
        fail(program, "its loader ", loader, mapped.error, fault);

    /* An ordinary execve of the loader for what this launcher cannot enter itself: a loader
     * of another machine (an i686 one: the kernel runs it), one whose program headers are
     * not in memory (musl finds its base through them), and secure mode, where glibc's loader
     * started by hand asserts when it removes a variable from under its own feet: it gets the
     * environment without them, as a set-user-ID program's own glibc would leave it. */
    if (fault || secure || !mapped.phdr) {
        if (secure)
            nixld_drop_unsecure_variables(stack.envp);
        long error = nixld_syscall3(NIXLD_SYS_execve, (long)loader, (long)loader_argv, (long)stack.envp);
        fail(program, "cannot start its loader ", loader, error, 0);
    }

    struct nixld_loader_image image = {mapped.phdr, sizeof(program_header), mapped.header.e_phnum,
                                       mapped.base + mapped.header.e_entry, loader};
    nixld_lay_out_by_hand_stack(loader_stack, loader_argc, stack.envp, stack.auxv, &image);
    nixld_hand_over(image.entry, loader_stack);
}

NIXLD_ENTRY_STUB(nixld_launcher_main);
