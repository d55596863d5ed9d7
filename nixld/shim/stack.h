/* The initial stack of a process, as the kernel lays it out: argc, argv (argc pointers and a
 * NULL), envp (ending in NULL), then the auxiliary vector, (type, value) pairs ending in
 * AT_NULL. What the shim and the launcher change in it, and how the shim puts it back.
 * Freestanding like contract.c, so that a test library can be built from it alone. */

#ifndef NIXLD_STACK_H
#define NIXLD_STACK_H

#include "contract.h"

#define AT_NULL 0
#define AT_IGNORE 1
#define AT_PHDR 3
#define AT_PHENT 4
#define AT_PHNUM 5
#define AT_PAGESZ 6
#define AT_BASE 7
#define AT_ENTRY 9
#define AT_SECURE 23
#define AT_EXECFN 31

struct nixld_stack {
    unsigned long *start; /* argc */
    char **argv;
    char **envp;
    unsigned long *auxv;
};

void nixld_read_stack(unsigned long *start, struct nixld_stack *stack);
/* The pair of `type` in `auxv`, or NULL. */
unsigned long *nixld_auxv_entry(unsigned long *auxv, unsigned long type);
/* Its value, or 0. */
unsigned long nixld_auxv_value(unsigned long *auxv, unsigned long type);

/* ---- the shim: LD_LIBRARY_PATH lent to the loader, taken back before the program starts ---- */

struct nixld_loan {
    char **slots[2];      /* the envp entries lent (NULL: none) */
    char *originals[2];   /* what they held */
    char **added;         /* the first of the entries added at the end of envp (NULL: none) */
    unsigned long *entry; /* the AT_ENTRY value that the loader reads */
    unsigned long program_entry;
};

/* How many entries nixld_add_entries adds: 16 bytes, which keeps the stack 16-byte aligned
 * (the entry point's ABI on every architecture the shim supports). */
#define NIXLD_ADDED_ENTRIES (16 / sizeof(unsigned long))

/* Points AT_ENTRY at `trampoline`, keeping the program's entry point in `loan`; returns 0 when
 * the auxv has no AT_ENTRY (then nothing is changed). */
int nixld_divert_entry(struct nixld_stack *stack, struct nixld_loan *loan, unsigned long trampoline);

/* Lends `entry` ("LD_LIBRARY_PATH=...") to the loader in envp slots of the caller's: the
 * first and the last LD_LIBRARY_PATH (musl's loader reads the first, glibc's the last), or,
 * without one, the last of nix-ld's variables, which only shims read. Returns 0 when there
 * is no such slot. */
int nixld_lend_slots(struct nixld_stack *stack, char *entry, struct nixld_loan *loan);

/* Adds NIXLD_ADDED_ENTRIES copies of `entry` at the end of envp by moving argc, argv and envp
 * 16 bytes down (those bytes below stack->start must be free); the auxv stays where it is.
 * Returns the new start, also in stack->start. */
unsigned long *nixld_add_entries(struct nixld_stack *stack, char *entry, struct nixld_loan *loan);

/* Takes back what was lent and puts the program's entry point back in AT_ENTRY; returns it.
 * After nixld_add_entries, the stack the program starts on is the loader's, 16 bytes below
 * the kernel's: the first added entry becomes envp's NULL and the rest AT_IGNORE pairs before
 * the kernel's auxv, so that start code that walks past envp finds an auxv, and libc's
 * environ (which the loader took from this very stack) is the caller's environment. */
unsigned long nixld_repay(struct nixld_loan *loan);

/* ---- the launcher: the loader started by hand, on a stack of its own ---- */

/* The pointers nixld_by_hand_argv adds to the program's arguments, its NULL included. */
#define NIXLD_BY_HAND_EXTRA 7

/* In `out`, `count` + NIXLD_BY_HAND_EXTRA pointers long, the argv of nixld run's launch:
 * LOADER [--library-path DIRS] [--argv0 ARGV0] PROGRAM ARGS..., without --library-path when
 * DIRS is empty and without --argv0 when `argv0` is NULL; returns its argc. */
int nixld_by_hand_argv(char **out, const char *loader, const char *library_path, const char *argv0,
                       const char *program, char *const *args, int count);

/* What the auxv of a loader started by hand says of the loader. */
struct nixld_loader_image {
    unsigned long phdr, phent, phnum, entry;
    const char *path;
};

/* The words nixld_lay_out_by_hand_stack writes for an argv of `argc` (its NULL not counted). */
nixld_size nixld_by_hand_stack_words(int argc, char *const *envp, const unsigned long *auxv);

/* Lays out at `out` the stack the kernel gives a loader started by hand: `argc`, the argv
 * already written at out + 1 (by nixld_by_hand_argv), `envp`, and `auxv` with AT_PHDR,
 * AT_PHENT, AT_PHNUM, AT_ENTRY and AT_EXECFN the loader's and AT_BASE 0. */
void nixld_lay_out_by_hand_stack(unsigned long *out, int argc, char *const *envp, const unsigned long *auxv,
                                 const struct nixld_loader_image *image);

#endif
