/* See load.h. */

#include "load.h"

/* A fault also closes the loader: nothing is left open behind it. */
static const char *fault(struct loader *loader, const char *what, long error)
{
    if (loader->fd >= 0)
        nixld_syscall3(NIXLD_SYS_close, loader->fd, 0, 0);
    loader->fd = -1;
    loader->error = error;
    return what;
}

static int read_exactly(int fd, void *buffer, unsigned long size, unsigned long offset)
{
    long got = nixld_pread(fd, buffer, size, offset);
    return got == (long)size;
}

static int is_flagged_pie(const struct loader *loader, const program_header *dynamic, unsigned long file_size)
{
    dynamic_entry entries[MAX_DYNAMIC_ENTRIES];
    unsigned long size = dynamic->p_filesz < sizeof entries ? dynamic->p_filesz : sizeof entries;
    if (dynamic->p_offset > file_size || size > file_size - dynamic->p_offset)
        return 0;
    size -= size % sizeof entries[0];
    if (!read_exactly(loader->fd, entries, size, dynamic->p_offset))
        return 0;
    for (unsigned long i = 0; i < size / sizeof entries[0] && entries[i].d_tag != DT_NULL; i++)
        if (entries[i].d_tag == DT_FLAGS_1)
            return (entries[i].d_val & DF_1_PIE) != 0;
    return 0;
}

/* struct statx, as far as it is read: 256 bytes in all. */
struct file_status {
    unsigned int mask, block_size;
    unsigned long long attributes;
    unsigned int links, uid, gid;
    unsigned short mode, spare;
    unsigned long long inode, size;
    unsigned long long rest[26];
};

const char *nixld_open_loader(const char *path, unsigned long page_size, struct loader *loader)
{
    loader->fd = -1;
    loader->error = 0;
    loader->other_machine = 0;
    loader->phdr = 0;
    /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer, for ever. */
    long fd = nixld_syscall3(NIXLD_SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd == -2)
        return fault(loader, "does not exist", 0);
    if (fd < 0)
        return fault(loader, "cannot be opened", fd);
    loader->fd = (int)fd;
    struct file_status status;
    long error = nixld_statx((int)fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &status);
    if (error < 0)
        return fault(loader, "cannot be read", error);
    if ((status.mode & S_IFMT) != S_IFREG)
        return fault(loader, "is not a regular file", 0);
    unsigned long file_size = status.size > -1UL ? -1UL : (unsigned long)status.size;

    /* One read for the header and, in every loader seen, the program headers after it. */
    unsigned long head[1024 / sizeof(unsigned long)];
    long got = nixld_pread((int)fd, head, sizeof head, 0);
    if (got < 0)
        return fault(loader, "cannot be read", got);
    elf_header *header = &loader->header;
    memcpy(header, head, sizeof *header);
    if (got < 4 || header->e_ident[0] != 0x7f || header->e_ident[1] != 'E' || header->e_ident[2] != 'L' ||
        header->e_ident[3] != 'F')
        return fault(loader, "is not an ELF file", 0);
    if (got < (long)sizeof *header)
        return fault(loader, "is not an ELF program loader (truncated ELF header)", 0);
    loader->other_machine = header->e_ident[4] != NIXLD_ELF_CLASS || header->e_ident[5] != 1 ||
                            header->e_machine != NIXLD_ELF_MACHINE;
    if (header->e_ident[4] != NIXLD_ELF_CLASS)
        return fault(loader, NIXLD_ELF_CLASS == 2 ? "is not an ELF program loader for this program "
                                            "(it is 32-bit, the program 64-bit)"
                                          : "is not an ELF program loader for this program "
                                            "(it is 64-bit, the program 32-bit)", 0);
    if (header->e_ident[5] != 1 || header->e_machine != NIXLD_ELF_MACHINE)
        return fault(loader, "is not an ELF program loader for this program (another machine's file)", 0);
    if (header->e_ident[6] != 1 || header->e_version != 1)
        return fault(loader, "is not an ELF program loader (unknown ELF version)", 0);
    if (header->e_type != ET_DYN || header->e_entry == 0)
        return fault(loader, "is not an ELF program loader (a loader is a shared object with an entry point)", 0);
    if (header->e_phentsize != sizeof(program_header) || header->e_phnum == 0 ||
        header->e_phnum > MAX_LOADER_PROGRAM_HEADERS)
        return fault(loader, "is not an ELF program loader (corrupt program header table)", 0);
    unsigned long table_size = header->e_phnum * sizeof(program_header);
    if (header->e_phoff > file_size || table_size > file_size - header->e_phoff)
        return fault(loader, "is not an ELF program loader (truncated program header table)", 0);
    if (header->e_phoff + table_size <= (unsigned long)got)
        memcpy(loader->headers, (char *)head + header->e_phoff, table_size);
    else if (!read_exactly((int)fd, loader->headers, table_size, header->e_phoff))
        return fault(loader, "is not an ELF program loader (truncated program header table)", 0);

    unsigned long previous_end = 0;
    int loads = 0, entry_is_code = 0;
    for (int i = 0; i < header->e_phnum; i++) {
        const program_header *segment = &loader->headers[i];
        if (segment->p_type == PT_INTERP)
            return fault(loader, "is not an ELF program loader (it is a dynamically linked program)", 0);
        if (segment->p_type == PT_DYNAMIC && is_flagged_pie(loader, segment, file_size))
            return fault(loader, "is not an ELF program loader (it is a static-pie program)", 0);
        if (segment->p_type != PT_LOAD)
            continue;
        unsigned long end = segment->p_vaddr + segment->p_memsz;
        /* The end rounded up to a page must not wrap around either: the reservation would be
         * too small, and a segment mapped with MAP_FIXED outside it. */
        if (segment->p_filesz > segment->p_memsz || end < segment->p_vaddr || end > -page_size ||
            segment->p_offset > file_size ||
            segment->p_filesz > file_size - segment->p_offset ||
            (segment->p_vaddr - segment->p_offset) % page_size != 0 ||
            (loads && segment->p_vaddr < previous_end))
            return fault(loader, "is not an ELF program loader (corrupt loadable segment)", 0);
        /* In the part the file fills: past it are zero pages, executed for as long as they last. */
        if ((segment->p_flags & PF_X) && header->e_entry >= segment->p_vaddr &&
            header->e_entry - segment->p_vaddr < segment->p_filesz)
            entry_is_code = 1;
        previous_end = end;
        loads++;
    }
    if (!loads)
        return fault(loader, "is not an ELF program loader (no loadable segment)", 0);
    if (!entry_is_code)
        return fault(loader, "is not an ELF program loader (its entry point is not in its code)", 0);
    /* Last, as nixld run checks it, so that what is wrong with the file itself is said first:
     * the kernel's refusal to execute it (no execute permission, or a noexec mount). */
    long executable = nixld_syscall3(NIXLD_SYS_faccessat, AT_FDCWD, (long)path, X_OK);
    if (executable == -13)
        return fault(loader, "is not executable (no execute permission, or on a noexec mount)", 0);
    if (executable < 0)
        return fault(loader, "cannot be executed", executable);
    return 0;
}

static int protection(unsigned long flags)
{
    return (flags & PF_R ? PROT_READ : 0) | (flags & PF_W ? PROT_WRITE : 0) | (flags & PF_X ? PROT_EXEC : 0);
}

const char *nixld_map_loader(struct loader *loader, unsigned long page)
{
    const program_header *first = 0, *last = 0;
    for (int i = 0; i < loader->header.e_phnum; i++) {
        if (loader->headers[i].p_type == PT_LOAD) {
            if (!first)
                first = &loader->headers[i];
            last = &loader->headers[i];
        }
    }
    unsigned long low = first->p_vaddr & -page;
    unsigned long span = ((last->p_vaddr + last->p_memsz + page - 1) & -page) - low;
    /* Reserve the whole span first, so that the segments keep their distances. */
    long reserved = nixld_mmap(0, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (is_mmap_error(reserved))
        return fault(loader, "cannot be mapped", reserved);
    loader->base = (unsigned long)reserved - low;

    for (int i = 0; i < loader->header.e_phnum; i++) {
        const program_header *segment = &loader->headers[i];
        if (segment->p_type != PT_LOAD)
            continue;
        int prot = protection(segment->p_flags);
        unsigned long start = loader->base + (segment->p_vaddr & -page);
        unsigned long file_end = loader->base + segment->p_vaddr + segment->p_filesz;
        unsigned long memory_end = loader->base + segment->p_vaddr + segment->p_memsz;
        unsigned long file_pages_end = (file_end + page - 1) & -page;
        if (segment->p_filesz) {
            long mapped = nixld_mmap((void *)start, file_pages_end - start, prot, MAP_PRIVATE | MAP_FIXED,
                                     loader->fd, segment->p_offset & -page);
            if (is_mmap_error(mapped))
                return fault(loader, "cannot be mapped", mapped);
        }
        if (segment->p_memsz > segment->p_filesz) {
            /* The bss: the rest of the file's last page is zeroed, then whole zero pages. As
             * the kernel does for an interpreter, only in a writable segment: in a read-only
             * one, the kernel leaves that page as the file has it, and so must the shim, or a
             * loader the kernel runs would not run through the shim. */
            if (file_end < file_pages_end && segment->p_filesz && (prot & PROT_WRITE))
                memset((void *)file_end, 0, file_pages_end - file_end);
            unsigned long zero_start = segment->p_filesz ? file_pages_end : start;
            if (memory_end > zero_start) {
                long mapped = nixld_mmap((void *)zero_start, ((memory_end + page - 1) & -page) - zero_start, prot,
                                         MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
                if (is_mmap_error(mapped))
                    return fault(loader, "cannot be mapped", mapped);
            }
        }
    }
    for (int i = 0; i < loader->header.e_phnum; i++) {
        const program_header *segment = &loader->headers[i];
        if (segment->p_type == PT_LOAD && loader->header.e_phoff >= segment->p_offset &&
            loader->header.e_phoff - segment->p_offset < segment->p_filesz)
            loader->phdr = loader->base + segment->p_vaddr + (loader->header.e_phoff - segment->p_offset);
    }
    nixld_syscall3(NIXLD_SYS_close, loader->fd, 0, 0);
    loader->fd = -1;
    return 0;
}
