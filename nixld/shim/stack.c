/* See stack.h. */

#include "stack.h"

void nixld_read_stack(unsigned long *start, struct nixld_stack *stack)
{
    stack->start = start;
    stack->argv = (char **)(start + 1);
    stack->envp = stack->argv + start[0] + 1;
    char **end = stack->envp;
    while (*end)
        end++;
    stack->auxv = (unsigned long *)(end + 1);
}

unsigned long *nixld_auxv_entry(unsigned long *auxv, unsigned long type)
{
    for (; auxv[0] != AT_NULL; auxv += 2)
        if (auxv[0] == type)
            return auxv;
    return 0;
}

unsigned long nixld_auxv_value(unsigned long *auxv, unsigned long type)
{
    unsigned long *entry = nixld_auxv_entry(auxv, type);
    return entry ? entry[1] : 0;
}

int nixld_divert_entry(struct nixld_stack *stack, struct nixld_loan *loan, unsigned long trampoline)
{
    unsigned long *entry = nixld_auxv_entry(stack->auxv, AT_ENTRY);
    if (!entry)
        return 0;
    loan->entry = &entry[1];
    loan->program_entry = entry[1];
    entry[1] = trampoline;
    return 1;
}

static int starts_with(const char *string, const char *prefix)
{
    while (*prefix)
        if (*string++ != *prefix++)
            return 0;
    return 1;
}

static void lend(struct nixld_loan *loan, int which, char **slot, char *entry)
{
    loan->slots[which] = slot;
    loan->originals[which] = *slot;
    *slot = entry;
}

int nixld_lend_slots(struct nixld_stack *stack, char *entry, struct nixld_loan *loan)
{
    char **first = 0, **last = 0;
    for (char **variable = stack->envp; *variable; variable++) {
        if (starts_with(*variable, "LD_LIBRARY_PATH=")) {
            if (!first)
                first = variable;
            last = variable;
        }
    }
    if (!first)
        for (char **variable = stack->envp; *variable; variable++)
            if (starts_with(*variable, "NIX_LD"))
                first = last = variable;
    loan->slots[0] = loan->slots[1] = 0;
    loan->added = 0;
    if (!first)
        return 0;
    lend(loan, 0, first, entry);
    if (last != first)
        lend(loan, 1, last, entry);
    return 1;
}

unsigned long *nixld_add_entries(struct nixld_stack *stack, char *entry, struct nixld_loan *loan)
{
    unsigned long *from = stack->start, *to = from - NIXLD_ADDED_ENTRIES;
    nixld_size words = (nixld_size)((unsigned long *)stack->auxv - from) - 1; /* argc to envp's last entry */
    for (nixld_size i = 0; i < words; i++)
        to[i] = from[i];
    char **added = (char **)(to + words);
    for (nixld_size i = 0; i < NIXLD_ADDED_ENTRIES; i++)
        added[i] = entry;
    loan->slots[0] = loan->slots[1] = 0;
    loan->added = added;
    stack->start = to;
    stack->argv = (char **)(to + 1);
    stack->envp = stack->argv + to[0] + 1;
    return to;
}

unsigned long nixld_repay(struct nixld_loan *loan)
{
    for (int i = 0; i < 2; i++)
        if (loan->slots[i])
            *loan->slots[i] = loan->originals[i];
    if (loan->added) {
        unsigned long *words = (unsigned long *)loan->added;
        words[0] = 0;
        for (nixld_size i = 1; i < NIXLD_ADDED_ENTRIES; i += 2) {
            words[i] = AT_IGNORE;
            words[i + 1] = 0; /* the last of these is envp's old NULL */
        }
    }
    *loan->entry = loan->program_entry;
    return loan->program_entry;
}

int nixld_by_hand_argv(char **out, const char *loader, const char *library_path, const char *argv0,
                       const char *program, char *const *args, int count)
{
    int at = 0;
    out[at++] = (char *)loader;
    if (*library_path) {
        out[at++] = "--library-path";
        out[at++] = (char *)library_path;
    }
    if (argv0) {
        out[at++] = "--argv0";
        out[at++] = (char *)argv0;
    }
    out[at++] = (char *)program;
    for (int i = 0; i < count; i++)
        out[at++] = args[i];
    out[at] = 0;
    return at;
}

static nixld_size entries(char *const *array)
{
    nixld_size count = 0;
    while (array[count])
        count++;
    return count;
}

static nixld_size pairs(const unsigned long *auxv)
{
    nixld_size count = 0;
    while (auxv[2 * count] != AT_NULL)
        count++;
    return count;
}

nixld_size nixld_by_hand_stack_words(int argc, char *const *envp, const unsigned long *auxv)
{
    return 1 + (nixld_size)argc + 1 + entries(envp) + 1 + 2 * (pairs(auxv) + 1);
}

void nixld_lay_out_by_hand_stack(unsigned long *out, int argc, char *const *envp, const unsigned long *auxv,
                                 const struct nixld_loader_image *image)
{
    out[0] = (unsigned long)argc;
    out += 1 + argc + 1;
    for (; *envp; envp++)
        *out++ = (unsigned long)*envp;
    *out++ = 0;
    for (;; auxv += 2) {
        unsigned long value = auxv[1];
        switch (auxv[0]) {
        case AT_PHDR: value = image->phdr; break;
        case AT_PHENT: value = image->phent; break;
        case AT_PHNUM: value = image->phnum; break;
        case AT_BASE: value = 0; break;
        case AT_ENTRY: value = image->entry; break;
        case AT_EXECFN: value = (unsigned long)image->path; break;
        }
        *out++ = auxv[0];
        *out++ = value;
        if (auxv[0] == AT_NULL)
            break;
    }
}
