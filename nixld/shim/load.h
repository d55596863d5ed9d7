/* The real loader, read and mapped as the kernel maps a program interpreter: every field of
 * its ELF header and program headers checked first, since its path comes from the caller's
 * environment. Shared by the shim and the launcher. */

#ifndef NIXLD_LOAD_H
#define NIXLD_LOAD_H

#include "runtime.h"

/* unsigned long is the word size on every Linux ABI the shim supports, so one declaration of
 * the header fits both classes; only the program header's field order differs. */
typedef struct {
    unsigned char e_ident[16];
    unsigned short e_type, e_machine;
    unsigned int e_version;
    unsigned long e_entry, e_phoff, e_shoff;
    unsigned int e_flags;
    unsigned short e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
} elf_header;
#if NIXLD_ELF_CLASS == 2
typedef struct {
    unsigned int p_type, p_flags;
    unsigned long p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
} program_header;
#else
typedef struct {
    unsigned long p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align;
} program_header;
#endif

typedef struct {
    long d_tag;
    unsigned long d_val;
} dynamic_entry;

#define ET_DYN 3
#define PT_LOAD 1
#define PT_DYNAMIC 2
#define PT_INTERP 3
#define PF_X 1
#define PF_W 2
#define PF_R 4
#define DT_NULL 0
#define DT_FLAGS_1 0x6ffffffb
#define DF_1_PIE 0x08000000

#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define O_RDONLY 0
#define O_NONBLOCK 04000
#define O_CLOEXEC 02000000
#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
#define X_OK 1
#define STATX_TYPE 0x1
#define STATX_SIZE 0x200
#define S_IFMT 0170000
#define S_IFREG 0100000

/* More program headers than any loader has (glibc's has 11, musl's 8). */
#define MAX_LOADER_PROGRAM_HEADERS 64
#define MAX_DYNAMIC_ENTRIES 256

struct loader {
    int fd;
    elf_header header;
    program_header headers[MAX_LOADER_PROGRAM_HEADERS];
    unsigned long base;
    unsigned long phdr;  /* where the program headers are in memory (0: not in a loaded segment) */
    long error;          /* the -errno behind the last fault, or 0 */
    int other_machine;   /* the fault: an ELF file of another class or machine than this code's */
};

/* Opens and checks the loader at `path`; returns NULL (loader->fd open), or what is wrong with
 * it as the end of a sentence about it ("does not exist", "is not an ELF file"), with the
 * -errno behind it (or 0) in loader->error and nothing left open. */
const char *nixld_open_loader(const char *path, unsigned long page_size, struct loader *loader);

/* Maps the opened loader, sets its base and closes it; returns NULL or the fault, as above
 * (what was mapped before a fault stays mapped: the caller ends the process). */
const char *nixld_map_loader(struct loader *loader, unsigned long page_size);

#endif
