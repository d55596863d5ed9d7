/* nixld's shim: a program interpreter that hands a foreign program to the real loader named
 * by nix-ld's environment contract, and leaves the program exactly the caller's environment.
 *
 * The kernel maps the program and this shim, and starts the shim with the program's initial
 * stack: argc, argv, NULL, envp, NULL, auxv. The shim maps the real loader as the kernel maps
 * an interpreter, points AT_BASE at it and jumps to its entry with that same stack, so that
 * /proc/self/exe, AT_EXECFN and the program's own mapping stay the kernel's. The library
 * directories reach the loader in LD_LIBRARY_PATH, for the loader only: AT_ENTRY is pointed at
 * a trampoline that puts the environment back, pointer for pointer, before the program's first
 * instruction (see lendable_slot). Freestanding: no C library; arch/ holds the system calls.
 */

#include "contract.h"
#include "load.h"
#include "runtime.h"

/* ---- what this launch is about ---- */

struct launch {
    int argc;
    char **argv;
    char **envp;
    unsigned long *auxv; /* (type, value) pairs ending in AT_NULL */
    const char *program; /* AT_EXECFN, or argv[0] */
    unsigned long page_size;
    int secure;
    struct nixld_settings settings;
};

static unsigned long *auxv_entry(unsigned long *auxv, unsigned long type)
{
    for (; auxv[0] != AT_NULL; auxv += 2)
        if (auxv[0] == type)
            return auxv;
    return 0;
}

static unsigned long auxv_value(unsigned long *auxv, unsigned long type)
{
    unsigned long *entry = auxv_entry(auxv, type);
    return entry ? entry[1] : 0;
}

static void read_launch(unsigned long *stack, struct launch *launch)
{
    launch->argc = (int)stack[0];
    launch->argv = (char **)(stack + 1);
    launch->envp = launch->argv + launch->argc + 1;
    char **end = launch->envp;
    while (*end)
        end++;
    launch->auxv = (unsigned long *)(end + 1);
    launch->page_size = auxv_value(launch->auxv, AT_PAGESZ);
    if (!launch->page_size)
        launch->page_size = 4096;
    launch->secure = auxv_value(launch->auxv, AT_SECURE) != 0;
    launch->program = (const char *)auxv_value(launch->auxv, AT_EXECFN);
    if (!launch->program)
        launch->program = launch->argc > 0 && launch->argv[0] ? launch->argv[0] : "(no name)";
    nixld_read_settings(launch->envp, NIXLD_SYSTEM, launch->secure, &launch->settings);
}

/* "nixld shim: PROGRAM: " */
static void begin(struct line *line, const struct launch *launch)
{
    line->length = 0;
    add_text(line, "nixld shim: ");
    add_text(line, launch->program);
    add_text(line, ": ");
}

static void add_source(struct line *line, enum nixld_source source, const char *generic)
{
    if (source == NIXLD_FROM_DEFAULT) {
        add_text(line, "nix-ld's default");
        return;
    }
    add_text(line, "from ");
    add_text(line, generic);
    if (source == NIXLD_FROM_SYSTEM_VARIABLE) {
        add_text(line, "_");
        add_text(line, NIXLD_SYSTEM);
    }
}

/* "loader PATH (from NIX_LD)" */
static void add_loader(struct line *line, const struct launch *launch)
{
    add_text(line, "loader ");
    add_string(line, launch->settings.loader);
    add_text(line, " (");
    add_source(line, launch->settings.loader_source, "NIX_LD");
    add_text(line, ")");
}

/* What to change: the setting in effect, as nixld run advises. */
static void add_advice(struct line *line, const struct launch *launch)
{
    if (launch->secure) {
        add_text(line, "; this program is set-user-ID or set-group-ID, so only nix-ld's default loader is used");
        return;
    }
    if (launch->settings.loader_source == NIXLD_FROM_DEFAULT) {
        add_text(line, ": set NIX_LD (or NIX_LD_" NIXLD_SYSTEM ") to the path of the real loader; "
                       "on NixOS, programs.nix-ld.enable = true sets it for you");
        return;
    }
    add_text(line, ": set ");
    add_text(line, launch->settings.loader_source == NIXLD_FROM_SYSTEM_VARIABLE ? "NIX_LD_" NIXLD_SYSTEM : "NIX_LD");
    add_text(line, " to the path of the real loader");
}

__attribute__((noreturn)) static void fail(const struct launch *launch, const char *fault, long error)
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
    add_advice(&line, launch);
    write_line(&line, 2);
    exit_group(EXIT_CANNOT_START);
}

/* What is said before anything is tried: a NIX_LD_LOG that names no level, secure mode. */
static void announce(const struct launch *launch)
{
    struct line line;
    if (launch->settings.unknown_log_level.data) {
        begin(&line, launch);
        add_text(&line, "NIX_LD_LOG='");
        add_string(&line, launch->settings.unknown_log_level);
        add_text(&line, "' is not one of error, warn, info, debug, trace; using warn");
        write_line(&line, 2);
    }
    if (launch->secure && launch->settings.log_level >= NIXLD_LOG_INFO) {
        begin(&line, launch);
        add_text(&line, "set-user-ID or set-group-ID (AT_SECURE): NIX_LD, NIX_LD_LIBRARY_PATH and "
                        "LD_LIBRARY_PATH are ignored, as glibc ignores LD_LIBRARY_PATH; nix-ld's default loader only");
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
    add(&line, library_path, length);
    if (!length)
        add_text(&line, "(empty)");
    add_text(&line, " (LD_LIBRARY_PATH, then ");
    if (launch->settings.nix_library_path_source == NIXLD_FROM_DEFAULT)
        add_text(&line, "nix-ld's default");
    else
        add_source(&line, launch->settings.nix_library_path_source, "NIX_LD_LIBRARY_PATH");
    add_text(&line, ")");
    write_line(&line, 2);
}

/* ---- the loader ---- */

/* Opens and checks the loader the settings name and, when `map`, maps it; a fault ends the
 * launch with one line. */
static void load(const struct launch *launch, struct loader *loader, int map)
{
    char path[4096];
    struct nixld_string name = launch->settings.loader;
    if (name.length >= sizeof path)
        fail(launch, "cannot be opened", -36);
    memcpy(path, name.data, name.length);
    path[name.length] = 0;
    const char *fault = nixld_open_loader(path, launch->page_size, loader);
    if (!fault && map)
        fault = nixld_map_loader(loader, launch->page_size);
    if (fault)
        fail(launch, fault, loader->error);
}

/* ---- the library path, for the loader's eyes only ---- */

/* What the trampoline puts back. Lives in the shim's own memory, which stays mapped. */
static struct {
    char **slot;           /* the envp entry the loader saw changed */
    char *original;        /* what it held: the caller's entry, or NULL where the slot was added */
    unsigned long *entry;  /* the AT_ENTRY value in the auxv the loader reads */
    unsigned long program_entry;
    unsigned long *auxv;   /* that auxv, when the loader's stack is a copy with an added slot */
} restore;

/* Called with the stack the loader starts the program on; returns the stack the program
 * starts on: the same, or, when the loader's had an added envp slot, a new one below it (so
 * that the loader's copy, which libc's environ, argv and auxv pointers point into, is kept). */
__attribute__((used)) unsigned long *nixld_restore_environment(unsigned long *stack)
{
    *restore.slot = restore.original;
    *restore.entry = restore.program_entry;
    if (!restore.auxv)
        return stack;
    unsigned long *end = restore.auxv;
    while (*end != AT_NULL)
        end += 2;
    /* One word shorter than the loader's: the added slot and its NULL become one NULL. */
    unsigned long words = (unsigned long)(end + 2 - stack) - 1;
    return (unsigned long *)(((unsigned long)(stack - words)) & -16UL);
}

/* Called on the program's stack: fills it, when it is a new one, with the loader's stack
 * without the added slot (argc, argv, NULL, envp, NULL, auxv: what the kernel would have
 * laid out, so that start code that walks past envp to auxv finds it); returns the entry. */
__attribute__((used)) unsigned long nixld_build_program_stack(unsigned long *loader_stack, unsigned long *stack)
{
    if (stack != loader_stack) {
        unsigned long *in = loader_stack, *out = stack;
        *out++ = *in++;
        while (*in)
            *out++ = *in++;
        *out++ = *in++;
        while (*in)
            *out++ = *in++;
        *out++ = 0;
        for (in = restore.auxv; in[0] != AT_NULL; in += 2) {
            out[0] = in[0];
            out[1] = in[1];
            out += 2;
        }
        out[0] = out[1] = 0;
    }
    return restore.program_entry;
}

/* Hidden, so that its address is computed from the program counter: through the GOT, it
 * would need a relocation that nothing applies (-fvisibility covers definitions only). */
__attribute__((visibility("hidden"))) void nixld_trampoline(void);
NIXLD_TRAMPOLINE(nixld_trampoline, nixld_restore_environment, nixld_build_program_stack);

static long directory_exists(const char *path)
{
    long fd = nixld_syscall3(NIXLD_SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC | NIXLD_O_DIRECTORY);
    if (fd >= 0)
        nixld_syscall3(NIXLD_SYS_close, fd, 0, 0);
    return fd >= 0;
}

/*
 * The loader gets LD_LIBRARY_PATH through one envp pointer, which the trampoline changes back;
 * the array keeps its length and place, so that libc's environ, argv and auxv pointers, taken
 * by the loader from this very stack, stay right for the program. The slot to lend: the
 * caller's own LD_LIBRARY_PATH (the last one: glibc's loader reads every entry, and the last
 * wins), else one of nix-ld's variables, which only shims read (hidden from library
 * constructors only, and back before the program's first instruction); NULL when there is
 * neither.
 */
static char **lendable_slot(const struct launch *launch)
{
    char **slot = 0;
    for (char **variable = launch->envp; *variable; variable++)
        if (starts_with(*variable, "LD_LIBRARY_PATH="))
            slot = variable;
    if (!slot)
        for (char **variable = launch->envp; *variable; variable++)
            if (starts_with(*variable, "NIX_LD"))
                slot = variable;
    return slot;
}

static void lend_slot(struct launch *launch, char **slot, char *entry)
{
    restore.slot = slot;
    restore.original = *slot;
    *slot = entry;
    restore.entry = auxv_entry(launch->auxv, AT_ENTRY);
}

/* With no slot to lend, the loader gets `copy` of the stack (below it) with one more envp
 * entry; the trampoline empties that slot (libc's environ is then the caller's environment,
 * ending in two NULLs) and starts the program on a third stack, below the copy, laid out as
 * the kernel lays one out. */
static void copy_with_one_more_slot(struct launch *launch, unsigned long *stack, char *entry, unsigned long *copy)
{
    unsigned long *out = copy;
    unsigned long *in = stack;
    *out++ = *in++;
    while (*in)
        *out++ = *in++;
    *out++ = *in++;
    while (*in)
        *out++ = *in++;
    restore.slot = (char **)out;
    restore.original = 0;
    *out++ = (unsigned long)entry;
    *out++ = *in++;
    unsigned long *auxv = out;
    restore.auxv = auxv;
    while (in[0] != AT_NULL) {
        *out++ = *in++;
        *out++ = *in++;
    }
    *out++ = *in++;
    *out++ = *in++;
    launch->auxv = auxv;
    restore.entry = auxv_entry(auxv, AT_ENTRY);
}

/* ---- started as a program: the loader run by hand ---- */

static void print_variables(const struct launch *launch)
{
    static const char text[] =
        "usage: SHIM PROGRAM [ARGS...]  (or install SHIM as the program interpreter)\n"
        "Starts PROGRAM through the real loader, as nix-ld does, without changing its environment.\n"
        "It honours, for " NIXLD_SYSTEM " programs:\n"
        "  NIX_LD_" NIXLD_SYSTEM ", NIX_LD   the real loader (default: /run/current-system/sw/share/nix-ld/lib/ld.so)\n"
        "  NIX_LD_LIBRARY_PATH_" NIXLD_SYSTEM ", NIX_LD_LIBRARY_PATH   library directories, ':' or ','\n"
        "      (default: /run/current-system/sw/share/nix-ld/lib), after LD_LIBRARY_PATH's\n"
        "  NIX_LD_LOG   error, warn (default), info, debug or trace\n"
        "Set-user-ID and set-group-ID programs ignore all of them but NIX_LD_LOG.\n";
    nixld_syscall3(NIXLD_SYS_write, 1, (long)text, sizeof text - 1);
    struct line line;
    line.length = 0;
    add_text(&line, "Now: ");
    add_loader(&line, launch);
    write_line(&line, 1);
}

__attribute__((noreturn)) static void run_by_hand(struct launch *launch, char *library_path, nixld_size length)
{
    if (launch->argc < 2) {
        print_variables(launch);
        exit_group(0);
    }
    launch->program = launch->argv[1];
    announce(launch);
    struct loader loader;
    load(launch, &loader, 0);
    nixld_syscall3(NIXLD_SYS_close, loader.fd, 0, 0);
    log_info(launch, library_path, length);

    char path[4096];
    memcpy(path, launch->settings.loader.data, launch->settings.loader.length);
    path[launch->settings.loader.length] = 0;
    library_path[length] = 0;
    char **argv = __builtin_alloca((launch->argc + NIXLD_BY_HAND_EXTRA) * sizeof(char *));
    nixld_by_hand_argv(argv, path, library_path, launch->argv[1], launch->argv[1], launch->argv + 2,
                       launch->argc - 2);
    long error = nixld_syscall3(NIXLD_SYS_execve, (long)path, (long)argv, (long)launch->envp);
    fail(launch, "cannot be executed", error);
}

/* ---- the shim ---- */

__attribute__((noreturn, used)) void nixld_shim_main(unsigned long *stack)
{
    struct launch launch;
    read_launch(stack, &launch);
    int started_as_interpreter = auxv_value(launch.auxv, AT_BASE) != 0;

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
    struct loader loader;
    load(&launch, &loader, 1);
    log_info(&launch, library_path, length);

    unsigned long *start = stack;
    /* Secure mode passes nothing, and glibc would drop LD_LIBRARY_PATH there anyway. */
    int hide = !launch.secure && length;
    if (hide && launch.settings.ld_library_path.data == 0 &&
        launch.settings.nix_library_path_source == NIXLD_FROM_DEFAULT && !directory_exists(library_path))
        hide = 0; /* nothing but a default directory that is not there: nothing to pass */
    if (hide) {
        char **slot = lendable_slot(&launch);
        if (slot) {
            lend_slot(&launch, slot, entry);
        } else {
            unsigned long *auxv_end = launch.auxv;
            while (*auxv_end != AT_NULL)
                auxv_end += 2;
            nixld_size words = (nixld_size)(auxv_end + 2 - stack) + 1;
            unsigned long *copy = __builtin_alloca(words * sizeof(unsigned long) + 16);
            copy = (unsigned long *)(((unsigned long)copy + 15) & -16UL);
            copy_with_one_more_slot(&launch, stack, entry, copy);
            start = copy;
        }
        restore.program_entry = restore.entry[1];
        restore.entry[1] = (unsigned long)nixld_trampoline;
        restore.entry = &restore.entry[1];
    }
    unsigned long *base = auxv_entry(launch.auxv, AT_BASE);
    base[1] = loader.base;
    nixld_hand_over(loader.base + loader.header.e_entry, start);
}

NIXLD_ENTRY_STUB(nixld_shim_main);
