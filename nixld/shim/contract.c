/* nix-ld's environment contract: see contract.h. */

#include "contract.h"

const char nixld_default_library_dir[] = "/run/current-system/sw/share/nix-ld/lib";
const char nixld_default_loader[] = "/run/current-system/sw/share/nix-ld/lib/ld.so";

static nixld_size string_length(const char *string)
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
    struct nixld_string result = {string, string_length(string)};
    return result;
}

struct nixld_string nixld_getenv(char *const *envp, const char *name)
{
    struct nixld_string absent = {0, 0};
    nixld_size length = string_length(name);
    for (; *envp; envp++) {
        const char *entry = *envp;
        nixld_size i = 0;
        while (i < length && entry[i] == name[i])
            i++;
        if (i == length && entry[i] == '=')
            return whole(entry + length + 1);
    }
    return absent;
}

/* nix-ld counts an empty value as unset. */
static struct nixld_string setting(char *const *envp, const char *name)
{
    struct nixld_string value = nixld_getenv(envp, name);
    if (value.data && value.length == 0)
        value.data = 0;
    return value;
}

/* `base` followed by "_" and `system`, in `buffer` (names are short: 64 bytes hold them all). */
static const char *system_specific(char *buffer, const char *base, const char *system)
{
    nixld_size at = 0;
    while (*base)
        buffer[at++] = *base++;
    buffer[at++] = '_';
    while (*system && at < 63)
        buffer[at++] = *system++;
    buffer[at] = 0;
    return buffer;
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
    settings->log_level = NIXLD_LOG_WARN;
    settings->unknown_log_level.data = 0;
    if (!value.data)
        return;
    const char *start = value.data, *end = value.data + value.length;
    while (start < end && is_python_space(*start))
        start++;
    while (end > start && is_python_space(end[-1]))
        end--;
    const char *name = log_levels;
    for (int level = 0; *name; level++, name += string_length(name) + 1) {
        nixld_size length = string_length(name), i = 0;
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
    char name[64];
    read_log_level(envp, settings);
    settings->loader = whole(nixld_default_loader);
    settings->loader_source = NIXLD_FROM_DEFAULT;
    settings->nix_library_path = whole(nixld_default_library_dir);
    settings->nix_library_path_source = NIXLD_FROM_DEFAULT;
    settings->ld_library_path.data = 0;
    settings->ld_library_path.length = 0;
    if (secure) {
        settings->nix_library_path.data = 0;
        settings->nix_library_path.length = 0;
        return;
    }

    struct nixld_string loaders[2] = {setting(envp, system_specific(name, "NIX_LD", system)),
                                      setting(envp, "NIX_LD")};
    for (int i = 0; i < 2; i++) {
        struct nixld_string value = loaders[i];
        if (!value.data)
            continue;
        /* Values read from ${stdenv.cc}/nix-support/dynamic-linker end in one newline. */
        if (value.data[value.length - 1] == '\n')
            value.length--;
        if (value.length) {
            settings->loader = value;
            settings->loader_source = i == 0 ? NIXLD_FROM_SYSTEM_VARIABLE : NIXLD_FROM_GENERIC_VARIABLE;
            break;
        }
    }

    struct nixld_string paths[2] = {setting(envp, system_specific(name, "NIX_LD_LIBRARY_PATH", system)),
                                    setting(envp, "NIX_LD_LIBRARY_PATH")};
    for (int i = 0; i < 2; i++) {
        if (paths[i].data) {
            settings->nix_library_path = paths[i];
            settings->nix_library_path_source = i == 0 ? NIXLD_FROM_SYSTEM_VARIABLE : NIXLD_FROM_GENERIC_VARIABLE;
            break;
        }
    }
    settings->ld_library_path = nixld_getenv(envp, "LD_LIBRARY_PATH");
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
