/* See load.h. */

#include "load.h"

static const char *fault(struct loader *loader, const char *what, long error)
{
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

const char *nixld_open_loader(const char *path, unsigned long page_size, struct loader *loader)
{
    loader->error = 0;
    loader->other_machine = 0;
    loader->phdr = 0;
    long fd = nixld_syscall3(NIXLD_SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC);
    if (fd == -2)
        return fault(loader, "does not exist", 0);
    if (fd < 0)
        return fault(loader, "cannot be opened", fd);
    loader->fd = (int)fd;
    long file_size = nixld_syscall3(NIXLD_SYS_lseek, fd, 0, SEEK_END);
    if (file_size < 0)
        return fault(loader, "cannot be read", file_size);

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
    if (header->e_phoff > (unsigned long)file_size || table_size > (unsigned long)file_size - header->e_phoff)
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
        if (segment->p_type == PT_DYNAMIC && is_flagged_pie(loader, segment, (unsigned long)file_size))
            return fault(loader, "is not an ELF program loader (it is a static-pie program)", 0);
        if (segment->p_type != PT_LOAD)
            continue;
        unsigned long end = segment->p_vaddr + segment->p_memsz;
        if (segment->p_filesz > segment->p_memsz || end < segment->p_vaddr ||
            segment->p_offset > (unsigned long)file_size ||
            segment->p_filesz > (unsigned long)file_size - segment->p_offset ||
            (segment->p_vaddr - segment->p_offset) % page_size != 0 ||
            (loads && segment->p_vaddr < previous_end))
            return fault(loader, "is not an ELF program loader (corrupt loadable segment)", 0);
        if ((segment->p_flags & PF_X) && header->e_entry >= segment->p_vaddr && header->e_entry < end)
            entry_is_code = 1;
        previous_end = end;
        loads++;
    }
    if (!loads)
        return fault(loader, "is not an ELF program loader (no loadable segment)", 0);
    if (!entry_is_code)
        return fault(loader, "is not an ELF program loader (its entry point is not in its code)", 0);
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
            /* The bss: the rest of the file's last page is zeroed, then whole zero pages. */
            if (file_end < file_pages_end && segment->p_filesz) {
                if (!(prot & PROT_WRITE))
                    nixld_syscall3(NIXLD_SYS_mprotect, (long)(file_end & -page), (long)page, prot | PROT_WRITE);
                memset((void *)file_end, 0, file_pages_end - file_end);
                if (!(prot & PROT_WRITE))
                    nixld_syscall3(NIXLD_SYS_mprotect, (long)(file_end & -page), (long)page, prot);
            }
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
    return 0;
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
