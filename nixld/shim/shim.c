/* nixld's shim: a program interpreter that hands a foreign program to the real loader named
 * by nix-ld's environment contract, and leaves the program exactly the caller's environment.
 *
 * The kernel maps the program and this shim, and starts the shim with the program's initial
 * stack: argc, argv, NULL, envp, NULL, auxv. The shim maps the real loader as the kernel maps
 * an interpreter, points AT_BASE at it and jumps to its entry with that same stack, so that
 * /proc/self/exe, AT_EXECFN and the program's own mapping stay the kernel's. The library
 * directories reach the loader in LD_LIBRARY_PATH, for the loader only: AT_ENTRY is pointed at
 * a trampoline that takes the entry back (stack.h, nixld_repay) before the program's first
 * instruction. Freestanding: no C library; arch/ holds the system calls.
 *
 * Everything the shim reads (environment, argv, AT_EXECFN, the loader file) is the caller's
 * choice, and it runs before set-user-ID programs too: see SECURITY.md.
 */

#include "contract.h"
#include "load.h"
#include "runtime.h"
#include "stack.h"

/* nixld's version, which `SHIM --version` says. */
#ifndef NIXLD_VERSION
#error "NIXLD_VERSION is given by nixld/_shim_build.py"
#endif

/* ---- what this launch is about ---- */

struct launch {
    struct nixld_stack stack;
    const char *program; /* AT_EXECFN, or argv[0] */
    unsigned long page_size;
    int secure;
    struct nixld_settings settings;
};

static void read_launch(unsigned long *start, struct launch *launch)
{
    nixld_read_stack(start, &launch->stack);
    unsigned long *auxv = launch->stack.auxv;
    launch->page_size = nixld_auxv_value(auxv, AT_PAGESZ);
    if (!launch->page_size)
        launch->page_size = 4096;
    launch->secure = nixld_auxv_value(auxv, AT_SECURE) != 0;
    launch->program = (const char *)nixld_auxv_value(auxv, AT_EXECFN);
    if (!launch->program)
        launch->program = start[0] > 0 && launch->stack.argv[0] ? launch->stack.argv[0] : "(no name)";
    nixld_read_settings(launch->stack.envp, NIXLD_SYSTEM, launch->secure, &launch->settings);
}

/* "nixld shim: PROGRAM: ". In secure mode the program's path, which its caller chose, is not
 * repeated back to the caller. */
static void begin(struct line *line, const struct launch *launch)
{
    line_begin(line);
    add_text(line, "nixld shim: ");
    if (launch->secure) {
        add_text(line, "a set-user-ID or set-group-ID program: ");
        return;
    }
    add_value_text(line, launch->program);
    add_text(line, ": ");
}

/* "from NIX_LD_x86_64_linux", as the caller spelt it, or "nix-ld's default". */
static void add_source(struct line *line, struct nixld_string variable)
{
    if (!variable.data) {
        add_text(line, "nix-ld's default");
        return;
    }
    add_text(line, "from ");
    add_value(line, variable.data, variable.length);
}

/* "loader PATH (from NIX_LD)" */
static void add_loader(struct line *line, const struct launch *launch)
{
    add_text(line, "loader ");
    add_value(line, launch->settings.loader.data, launch->settings.loader.length);
    add_text(line, " (");
    add_source(line, launch->settings.loader_variable);
    add_text(line, ")");
}

/* Whether the loader came from NIX_LD itself, which serves this machine's own programs. */
static int from_generic_variable(struct nixld_string variable)
{
    static const char generic[] = "NIX_LD";
    if (variable.length != sizeof generic - 1)
        return 0;
    for (nixld_size i = 0; i < variable.length; i++)
        if (variable.data[i] != generic[i])
            return 0;
    return 1;
}

/* What to change: the setting in effect, as nixld run advises; for another machine's loader
 * that came from NIX_LD or the default, this system's own variable, as nixld run advises. */
static void add_advice(struct line *line, const struct launch *launch, int other_machine)
{
    if (launch->secure) {
        add_text(line, "; set-user-ID and set-group-ID programs start only through nix-ld's default loader "
                       "(on NixOS, programs.nix-ld.enable = true provides it)");
        return;
    }
    struct nixld_string variable = launch->settings.loader_variable;
    if (other_machine && (!variable.data || from_generic_variable(variable))) {
        add_text(line, ": set NIX_LD_" NIXLD_SYSTEM " to the path of the real loader of " NIXLD_SYSTEM
                       " programs (NIX_LD names another machine's)");
        return;
    }
    if (!variable.data) {
        add_text(line, ": set NIX_LD (or NIX_LD_" NIXLD_SYSTEM ") to the path of the real loader; "
                       "on NixOS, programs.nix-ld.enable = true sets it for you");
        return;
    }
    add_text(line, ": set ");
    add_value(line, variable.data, variable.length);
    add_text(line, " to the path of the real loader");
}

__attribute__((noreturn)) static void fail_with(const struct launch *launch, const char *fault, long error,
                                               int other_machine)
{
    struct line line;
    begin(&line, launch);
    add_loader(&line, launch);
    add_text(&line, " ");
    add_text(&line, fault);
    if (error) {
        add_text(&line, ": ");
        add_text(&line, error_text(error));
    }
    add_advice(&line, launch, other_machine);
    write_line(&line, 2);
    exit_group(EXIT_CANNOT_EXECUTE);
}

__attribute__((noreturn)) static void fail(const struct launch *launch, const char *fault, long error)
{
    fail_with(launch, fault, error, 0);
}

/* A NIX_LD_LOG that names no level (never in secure mode: nothing is read there). */
static void announce(const struct launch *launch)
{
    struct line line;
    if (launch->settings.unknown_log_level.data) {
        begin(&line, launch);
        add_text(&line, "NIX_LD_LOG='");
        add_value(&line, launch->settings.unknown_log_level.data, launch->settings.unknown_log_level.length);
        add_text(&line, "' is not one of error, warn, info, debug, trace; using warn");
        write_line(&line, 2);
    }
}

static void log_info(const struct launch *launch, const char *library_path, nixld_size length)
{
    struct line line;
    if (launch->settings.log_level < NIXLD_LOG_INFO)
        return;
    begin(&line, launch);
    add_loader(&line, launch);
    add_text(&line, "; library path ");
    add_value(&line, library_path, length);
    if (!length)
        add_text(&line, "(empty)");
    add_text(&line, " (LD_LIBRARY_PATH, then ");
    add_source(&line, launch->settings.nix_library_path_variable);
    add_text(&line, ")");
    write_line(&line, 2);
}

/* ---- the loader ---- */

/* Opens and checks the loader the settings name and, when `map`, maps it; a fault ends the
 * launch with one line. */
static void load(const struct launch *launch, struct loader *loader, int map, char *path)
{
    struct nixld_string name = launch->settings.loader;
    if (name.length >= 4096)
        fail(launch, "cannot be opened", -36);
    memcpy(path, name.data, name.length);
    path[name.length] = 0;
    const char *fault = nixld_open_loader(path, launch->page_size, loader);
    if (!fault && map)
        fault = nixld_map_loader(loader, launch->page_size);
    if (fault)
        fail_with(launch, fault, loader->error, loader->other_machine);
}

/* ---- the library path, for the loader's eyes only ---- */

/* What the trampoline takes back. Lives in the shim's own memory, which stays mapped. */
static struct nixld_loan loan;

/* Called by the trampoline on the program's stack: returns the program's entry point. */
__attribute__((used)) unsigned long nixld_repay_loan(void)
{
    return nixld_repay(&loan);
}

/* Hidden, so that its address is computed from the program counter: through the GOT, it
 * would need a relocation that nothing applies (-fvisibility covers definitions only). */
__attribute__((visibility("hidden"))) void nixld_trampoline(void);
NIXLD_TRAMPOLINE(nixld_trampoline, nixld_repay_loan);

static long directory_exists(const char *path)
{
    long fd = nixld_syscall3(NIXLD_SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC | NIXLD_O_DIRECTORY);
    if (fd >= 0)
        nixld_syscall3(NIXLD_SYS_close, fd, 0, 0);
    return fd >= 0;
}

/* Whether there is anything to hand the loader. Secure mode passes nothing (glibc would drop
 * LD_LIBRARY_PATH there anyway), and nix-ld's default directory alone only where it exists. */
static int has_library_path(const struct launch *launch, const char *library_path, nixld_size length)
{
    if (launch->secure || !length)
        return 0;
    if (launch->settings.ld_library_path.data == 0 && !launch->settings.nix_library_path_variable.data)
        return directory_exists(library_path);
    return 1;
}

/* ---- started as a program: its usage, its version, or the loader run by hand ---- */

/* One line of nixld's own words on stdout, in three pieces. */
static void say(const char *first, const char *second, const char *third)
{
    struct line line;
    line_begin(&line);
    add_text(&line, first);
    add_text(&line, second);
    add_text(&line, third);
    write_line(&line, 1);
}

static void usage(const struct launch *launch)
{
    char name[64];
    say("usage: SHIM PROGRAM [ARG]...", "", "");
    say("nixld's shim, a nix-ld-compatible program interpreter for ", NIXLD_SYSTEM, " programs. Put at the");
    say("interpreter path they name (nix-ld's shim's place), it starts each of them through the real", "", "");
    say("loader; run as SHIM PROGRAM [ARG]..., it starts PROGRAM as that loader run by hand would.", "", "");
    say("Either way the program gets its caller's environment unchanged.", "", "");
    say("It reads, for ", NIXLD_SYSTEM, " programs:");
    say("  ", nixld_system_variable(name, "NIX_LD", NIXLD_SYSTEM, '_'), ", NIX_LD");
    say("      the real loader (default: ", nixld_default_loader, ")");
    say("  ", nixld_system_variable(name, "NIX_LD_LIBRARY_PATH", NIXLD_SYSTEM, '_'), ", NIX_LD_LIBRARY_PATH");
    say("      library directories, separated by ':' or ',', searched after LD_LIBRARY_PATH's", "", "");
    say("      (default: ", nixld_default_library_dir, ")");
    say("  NIX_LD_LOG", "", "");
    say("      error, warn (default), info, debug or trace", "", "");
    say("The system-specific ones win; where one is not in the environment, nix-ld 1.x's spelling", "", "");
    say("of it counts instead:", "", "");
    say("  ", nixld_system_variable(name, "NIX_LD", NIXLD_SYSTEM, '-'), "");
    say("  ", nixld_system_variable(name, "NIX_LD_LIBRARY_PATH", NIXLD_SYSTEM, '-'), "");
    say("Set-user-ID and set-group-ID programs ignore all of them.", "", "");
    struct line line;
    line_begin(&line);
    add_text(&line, "Now: ");
    add_loader(&line, launch);
    write_line(&line, 1);
}

__attribute__((noreturn)) static void run_by_hand(struct launch *launch, char *library_path, nixld_size length)
{
    int argc = (int)launch->stack.start[0];
    char **argv = launch->stack.argv;
    /* No program is named so: one would be started as ./--help. */
    if (argc < 2 || equal_strings(argv[1], "--help") || equal_strings(argv[1], "-h")) {
        usage(launch);
        exit_group(0);
    }
    if (equal_strings(argv[1], "--version") || equal_strings(argv[1], "-V")) {
        say("nixld shim ", NIXLD_VERSION, " for " NIXLD_SYSTEM " programs");
        exit_group(0);
    }
    launch->program = argv[1];
    announce(launch);
    char path[4096];
    struct loader loader;
    load(launch, &loader, 0, path);
    nixld_syscall3(NIXLD_SYS_close, loader.fd, 0, 0);
    log_info(launch, library_path, length);

    library_path[length] = 0;
    char **loader_argv = __builtin_alloca((argc + NIXLD_BY_HAND_EXTRA) * sizeof(char *));
    nixld_by_hand_argv(loader_argv, path, library_path, argv[1], argv[1], argv + 2, argc - 2);
    long error = nixld_syscall3(NIXLD_SYS_execve, (long)path, (long)loader_argv, (long)launch->stack.envp);
    fail(launch, "cannot be executed", error);
}

/* ---- the shim ---- */

__attribute__((noreturn, used)) void nixld_shim_main(unsigned long *start)
{
    struct launch launch;
    read_launch(start, &launch);
    int started_as_interpreter = nixld_auxv_value(launch.stack.auxv, AT_BASE) != 0;

    /* "LD_LIBRARY_PATH=" and the path, in memory that outlives this frame (the loader runs on
     * this stack): the shim's own for the usual lengths, mapped for the longest the kernel
     * passes. */
    static char usual[4096];
    nixld_size length = nixld_library_path(&launch.settings, 0, 0);
    static const char name[] = "LD_LIBRARY_PATH=";
    nixld_size size = sizeof name + length;
    char *entry = usual;
    if (size > sizeof usual) {
        long memory = nixld_mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (is_mmap_error(memory))
            fail(&launch, "cannot be used: no memory for the library path", memory);
        entry = (char *)memory;
    }
    memcpy(entry, name, sizeof name - 1);
    char *library_path = entry + sizeof name - 1;
    length = nixld_library_path(&launch.settings, library_path, length);
    library_path[length] = 0;

    if (!started_as_interpreter)
        run_by_hand(&launch, library_path, length);

    announce(&launch);
    char path[4096];
    struct loader loader;
    load(&launch, &loader, 1, path);
    log_info(&launch, library_path, length);

    if (has_library_path(&launch, library_path, length) &&
        nixld_divert_entry(&launch.stack, &loan, (unsigned long)nixld_trampoline)) {
        /* With no slot of the caller's to lend, entries are added below the kernel's stack, in
         * the bytes the entry stub keeps free (NIXLD_ENTRY_STUB). */
        if (!nixld_lend_slots(&launch.stack, entry, &loan))
            nixld_add_entries(&launch.stack, entry, &loan);
    }
    nixld_auxv_entry(launch.stack.auxv, AT_BASE)[1] = loader.base;
    nixld_hand_over(loader.base + loader.header.e_entry, launch.stack.start);
}

NIXLD_ENTRY_STUB(nixld_shim_main);
