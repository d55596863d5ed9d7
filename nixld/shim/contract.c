/* nix-ld's environment contract: see contract.h. */

#include "contract.h"

const char nixld_default_library_dir[] = "/run/current-system/sw/share/nix-ld/lib";
const char nixld_default_loader[] = "/run/current-system/sw/share/nix-ld/lib/ld.so";

nixld_size nixld_length(const char *string)
{
    nixld_size length = 0;
    while (string[length])
        length++;
    return length;
}

static int same_bytes(const char *a, const char *b, nixld_size length)
{
    for (nixld_size i = 0; i < length; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static struct nixld_string whole(const char *string)
{
    struct nixld_string result = {string, nixld_length(string)};
    return result;
}

/* Whether `entry` is "`name`=...". */
static int names(const char *entry, const char *name, nixld_size length)
{
    nixld_size i = 0;
    while (i < length && entry[i] == name[i])
        i++;
    return i == length && entry[i] == '=';
}

struct nixld_string nixld_getenv(char *const *envp, const char *name)
{
    struct nixld_string absent = {0, 0};
    nixld_size length = nixld_length(name);
    for (; *envp; envp++)
        if (names(*envp, name, length))
            return whole(*envp + length + 1);
    return absent;
}

struct nixld_string nixld_getenv_last(char *const *envp, const char *name)
{
    struct nixld_string found = {0, 0};
    nixld_size length = nixld_length(name);
    for (; *envp; envp++)
        if (names(*envp, name, length))
            found = whole(*envp + length + 1);
    return found;
}

/* glibc's UNSECURE_ENVVARS (sysdeps/generic/unsecvars.h, GLIBC_TUNABLES where a build has no
 * tunables), the architectures' EXTRA_UNSECURE_ENVVARS (i386's LD_AOUT_*, x86-64's
 * LD_PREFER_MAP_32BIT_EXEC) and MALLOC_CHECK_: what any release removes from a set-user-ID
 * program's environment. One string: a table of pointers would need relocating (see log_levels). */
static const char unsecure_variables[] =
    "GCONV_PATH\0GETCONF_DIR\0GLIBC_TUNABLES\0HOSTALIASES\0LD_AOUT_LIBRARY_PATH\0LD_AOUT_PRELOAD\0LD_AUDIT\0"
    "LD_DEBUG\0LD_DEBUG_OUTPUT\0LD_DYNAMIC_WEAK\0LD_HWCAP_MASK\0LD_LIBRARY_PATH\0LD_ORIGIN_PATH\0"
    "LD_PREFER_MAP_32BIT_EXEC\0LD_PRELOAD\0LD_PROFILE\0LD_SHOW_AUXV\0LD_USE_LOAD_BIAS\0LOCALDOMAIN\0LOCPATH\0"
    "MALLOC_CHECK_\0MALLOC_TRACE\0NIS_PATH\0NLSPATH\0RESOLV_HOST_CONF\0RES_OPTIONS\0TMPDIR\0TZDIR\0";

static int is_unsecure(const char *entry)
{
    for (const char *name = unsecure_variables; *name; name += nixld_length(name) + 1)
        if (names(entry, name, nixld_length(name)))
            return 1;
    return 0;
}

nixld_size nixld_drop_unsecure_variables(char **envp)
{
    nixld_size kept = 0;
    for (char **entry = envp; *entry; entry++)
        if (!is_unsecure(*entry))
            envp[kept++] = *entry;
    envp[kept] = 0;
    return kept;
}

/* nix-ld counts an empty value as unset. */
static struct nixld_string setting(char *const *envp, const char *name)
{
    struct nixld_string value = nixld_getenv(envp, name);
    if (value.data && value.length == 0)
        value.data = 0;
    return value;
}

const char *nixld_system_variable(char *buffer, const char *base, const char *system, char separator)
{
    nixld_size at = 0, last_underscore = 0;
    while (*base)
        buffer[at++] = *base++;
    buffer[at++] = '_';
    for (; *system && at < 63; system++) {
        if (*system == '_')
            last_underscore = at;
        buffer[at++] = *system;
    }
    if (last_underscore)
        buffer[last_underscore] = separator;
    buffer[at] = 0;
    return buffer;
}

/* A variable as getenv finds it: its value, and its name pointing into its entry. */
struct variable {
    struct nixld_string name, value;
};

static struct variable variable(char *const *envp, const char *name)
{
    struct variable found = {{0, 0}, nixld_getenv(envp, name)};
    if (found.value.data) {
        found.name.length = nixld_length(name);
        found.name.data = found.value.data - found.name.length - 1;
    }
    return found;
}

/* `base`'s two variables in the order they count: `base`_`system` (in nix-ld 2.x's spelling
 * or, when the environment has no entry of that name, nix-ld 1.x's), then `base`. */
static void variables(char *const *envp, const char *base, const char *system, struct variable found[2])
{
    char name[64];
    found[0] = variable(envp, nixld_system_variable(name, base, system, '_'));
    if (!found[0].value.data)
        found[0] = variable(envp, nixld_system_variable(name, base, system, '-'));
    found[1] = variable(envp, base);
}

/* The levels in order, as one string: a table of pointers would need relocating, and the
 * shim has no loader to relocate it. */
static const char log_levels[] = "error\0warn\0info\0debug\0trace\0";

static int is_python_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void read_log_level(char *const *envp, struct nixld_settings *settings)
{
    struct nixld_string value = setting(envp, "NIX_LD_LOG");
    if (!value.data)
        return;
    const char *start = value.data, *end = value.data + value.length;
    while (start < end && is_python_space(*start))
        start++;
    while (end > start && is_python_space(end[-1]))
        end--;
    const char *name = log_levels;
    for (int level = 0; *name; level++, name += nixld_length(name) + 1) {
        nixld_size length = nixld_length(name), i = 0;
        if ((nixld_size)(end - start) != length)
            continue;
        while (i < length && (start[i] >= 'A' && start[i] <= 'Z' ? start[i] + 32 : start[i]) == name[i])
            i++;
        if (i == length) {
            settings->log_level = (enum nixld_log_level)level;
            return;
        }
    }
    settings->unknown_log_level = value;
}

void nixld_read_settings(char *const *envp, const char *system, int secure, struct nixld_settings *settings)
{
    static const struct nixld_string absent = {0, 0};
    settings->log_level = NIXLD_LOG_WARN;
    settings->unknown_log_level = absent;
    settings->loader = whole(nixld_default_loader);
    settings->loader_variable = absent;
    settings->nix_library_path = whole(nixld_default_library_dir);
    settings->nix_library_path_variable = absent;
    settings->ld_library_path = absent;
    if (secure) {
        settings->nix_library_path = absent;
        return;
    }
    read_log_level(envp, settings);

    /* nix-ld counts an empty value as unset, here and below. */
    struct variable loaders[2];
    variables(envp, "NIX_LD", system, loaders);
    for (int i = 0; i < 2; i++) {
        struct nixld_string value = loaders[i].value;
        /* Values read from ${stdenv.cc}/nix-support/dynamic-linker end in one newline. */
        if (value.length && value.data[value.length - 1] == '\n')
            value.length--;
        if (value.length) {
            settings->loader = value;
            settings->loader_variable = loaders[i].name;
            break;
        }
    }

    struct variable paths[2];
    variables(envp, "NIX_LD_LIBRARY_PATH", system, paths);
    for (int i = 0; i < 2; i++) {
        if (paths[i].value.length) {
            settings->nix_library_path = paths[i].value;
            settings->nix_library_path_variable = paths[i].name;
            break;
        }
    }
    settings->ld_library_path = nixld_getenv_last(envp, "LD_LIBRARY_PATH");
}

/* Whether `out` (entries joined with ':', `used` bytes) already holds the entry. */
static int already_listed(const char *out, nixld_size used, const char *entry, nixld_size length)
{
    nixld_size start = 0;
    while (start < used) {
        nixld_size end = start;
        while (end < used && out[end] != ':')
            end++;
        if (end - start == length && same_bytes(out + start, entry, length))
            return 1;
        start = end + 1;
    }
    return 0;
}

/* Appends the entries of `value` separated by ':' or `other_separator` to out; returns the new
 * full length. Entries that no longer fit are counted, not written, and not checked for
 * repeats: the caller refuses a result longer than its buffer anyway. */
static nixld_size append_entries(struct nixld_string value, char other_separator, char *out,
                                 nixld_size used, nixld_size capacity)
{
    nixld_size start = 0;
    while (value.data && start < value.length) {
        nixld_size end = start;
        while (end < value.length && value.data[end] != ':' && value.data[end] != other_separator)
            end++;
        const char *entry = value.data + start;
        nixld_size length = end - start;
        start = end + 1;
        /* Empty entries are dropped: to glibc they mean the working directory. */
        if (length == 0)
            continue;
        nixld_size needed = (used ? 1 : 0) + length;
        if (used + needed <= capacity) {
            if (already_listed(out, used, entry, length))
                continue;
            if (used)
                out[used] = ':';
            for (nixld_size i = 0; i < length; i++)
                out[used + (used ? 1 : 0) + i] = entry[i];
        }
        used += needed;
    }
    return used;
}

nixld_size nixld_library_path(const struct nixld_settings *settings, char *out, nixld_size capacity)
{
    nixld_size used = append_entries(settings->ld_library_path, ';', out, 0, capacity);
    return append_entries(settings->nix_library_path, ',', out, used, capacity);
}

nixld_size nixld_join_library_path(struct nixld_string ld_library_path, struct nixld_string directories, char *out,
                                   nixld_size capacity)
{
    nixld_size used = append_entries(ld_library_path, ';', out, 0, capacity);
    return append_entries(directories, ':', out, used, capacity);
}
