/* nix-ld's environment contract read from an envp array, by the same rules as nixld/config.py
 * (one specification, two implementations; tests/test_shim_contract.py holds them together).
 * Freestanding: no C library, so that the shim and a test library can both be built from it. */

#ifndef NIXLD_CONTRACT_H
#define NIXLD_CONTRACT_H

typedef __SIZE_TYPE__ nixld_size;

struct nixld_string {
    const char *data; /* not NUL-terminated; NULL when absent */
    nixld_size length;
};

enum nixld_log_level { NIXLD_LOG_ERROR, NIXLD_LOG_WARN, NIXLD_LOG_INFO, NIXLD_LOG_DEBUG, NIXLD_LOG_TRACE };

/* The `..._variable` fields name the variable a setting came from as its environment entry
 * spells it ("NIX_LD", "NIX_LD_x86_64_linux" or nix-ld 1.x's "NIX_LD_x86_64-linux"), pointing
 * into that entry; data NULL for nix-ld's default. */
struct nixld_settings {
    struct nixld_string loader; /* one trailing newline stripped */
    struct nixld_string loader_variable;
    struct nixld_string nix_library_path; /* the chosen variable's value, unsplit, or the default directory */
    struct nixld_string nix_library_path_variable;
    struct nixld_string ld_library_path; /* the caller's own, as glibc's loader reads it (the last) */
    enum nixld_log_level log_level;
    struct nixld_string unknown_log_level; /* NIX_LD_LOG's value when it names no level */
};

/* Hidden, so that the shim's other units reach them from the program counter: through the GOT
 * (i386 has no other way to an object of another unit), they would need a relocation that
 * nothing applies (-fvisibility covers definitions only). */
__attribute__((visibility("hidden"))) extern const char nixld_default_loader[];
__attribute__((visibility("hidden"))) extern const char nixld_default_library_dir[];

/* The settings in `envp` (NULL-terminated) for a program of `system` ("x86_64_linux"): the
 * loader from NIX_LD_`system`, then NIX_LD; the directories from NIX_LD_LIBRARY_PATH_`system`,
 * then NIX_LD_LIBRARY_PATH; an empty value counts as unset. A system-specific variable is read
 * in nix-ld 2.x's spelling (NIX_LD_x86_64_linux) or, when the environment has no entry of that
 * name (an empty one counts), in nix-ld 1.x's, the system's own (NIX_LD_x86_64-linux). When
 * `secure` (AT_SECURE: a set-user-ID program started by someone else), nothing at all is taken
 * from the environment, as glibc's loader then ignores LD_LIBRARY_PATH and LD_DEBUG: the
 * default loader, no library directories, the default log level. */
void nixld_read_settings(char *const *envp, const char *system, int secure, struct nixld_settings *settings);

/* `base`_`system` in `buffer` (64 bytes hold every such name), `system` spelt as nix-ld 2.x
 * spells it ("x86_64_linux") or, when `separator` is '-', as nix-ld 1.x did, as the Nix system
 * ("x86_64-linux": its last '_' a '-'); returns `buffer`. */
const char *nixld_system_variable(char *buffer, const char *base, const char *system, char separator);

/* The library path to hand the loader: the caller's LD_LIBRARY_PATH entries (split on ':' and
 * ';'), then the NIX_LD directories (split on ':' and ','), empty entries dropped, the first
 * occurrence of each kept, joined with ':'. Writes at most `capacity` bytes to `out` and
 * returns the full length, so a result longer than `capacity` is known by its length. */
nixld_size nixld_library_path(const struct nixld_settings *settings, char *out, nixld_size capacity);

/* The same for a launcher whose directories were decided when it was made: the caller's
 * LD_LIBRARY_PATH entries, then `directories` (joined with ':' alone). */
nixld_size nixld_join_library_path(struct nixld_string ld_library_path, struct nixld_string directories, char *out,
                                   nixld_size capacity);

/* The value of the first entry `name`=... in `envp`, as getenv finds it; data NULL when absent. */
struct nixld_string nixld_getenv(char *const *envp, const char *name);

/* The value of the last entry `name`=... in `envp`, as glibc's loader reads its own variables
 * (it goes through every entry, and a later one overrides an earlier one). */
struct nixld_string nixld_getenv_last(char *const *envp, const char *name);

/* Takes out of `envp` (NULL-terminated, compacted in place) every variable that glibc's loader
 * removes from a set-user-ID program's environment, in any glibc release; returns how many
 * entries are left. */
nixld_size nixld_drop_unsecure_variables(char **envp);

/* The length of a NUL-terminated string. */
nixld_size nixld_length(const char *string);

#endif
