/* i386 (i686 programs, also on an x86-64 kernel): system calls, the entry stub, the hand-over
 * to the loader and the trampoline. */

#ifndef NIXLD_ARCH_H
#define NIXLD_ARCH_H

#define NIXLD_SYSTEM "i686_linux"
#define NIXLD_ELF_CLASS 1 /* ELFCLASS32 */
#define NIXLD_ELF_MACHINE 3 /* EM_386 */

/* The open flag that differs between architectures. */
#define NIXLD_O_DIRECTORY 0200000

#define NIXLD_SYS_read 3
#define NIXLD_SYS_write 4
#define NIXLD_SYS_close 6
#define NIXLD_SYS_execve 11
#define NIXLD_SYS_old_mmap 90
#define NIXLD_SYS_munmap 91
#define NIXLD_SYS_pread64 180
#define NIXLD_SYS_exit_group 252
#define NIXLD_SYS_openat 295
#define NIXLD_SYS_statx 383
#define NIXLD_SYS_faccessat 307

static inline long nixld_syscall3(long number, long a, long b, long c)
{
    long result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(number), "b"(a), "c"(b), "d"(c) : "memory");
    return result;
}

/* old_mmap takes its six arguments in memory: no register juggling around %ebp. */
static inline long nixld_mmap(void *address, unsigned long length, int protection, int flags, int fd,
                              unsigned long offset)
{
    unsigned long arguments[6] = {(unsigned long)address, length, (unsigned long)protection,
                                  (unsigned long)flags, (unsigned long)fd, offset};
    return nixld_syscall3(NIXLD_SYS_old_mmap, (long)arguments, 0, 0);
}

static inline long nixld_pread(int fd, void *buffer, unsigned long size, unsigned long offset)
{
    long result;
    __asm__ volatile("int $0x80"
                     : "=a"(result)
                     : "a"(NIXLD_SYS_pread64), "b"(fd), "c"(buffer), "d"(size), "S"(offset), "D"(0)
                     : "memory");
    return result;
}

static inline long nixld_statx(int fd, const char *path, int flags, unsigned int mask, void *buffer)
{
    long result;
    __asm__ volatile("int $0x80"
                     : "=a"(result)
                     : "a"(NIXLD_SYS_statx), "b"(fd), "c"(path), "d"(flags), "S"(mask), "D"(buffer)
                     : "memory");
    return result;
}

/* As on x86-64: 32 bytes below the kernel's stack are left free for nixld_add_entries. */
#define NIXLD_ENTRY_STUB(main_function)                                                          \
    __asm__(".text\n"                                                                            \
            ".global _start\n"                                                                   \
            ".type _start, @function\n"                                                          \
            "_start:\n"                                                                          \
            "    xor %ebp, %ebp\n"                                                               \
            "    mov %esp, %eax\n"                                                               \
            "    and $-16, %esp\n"                                                               \
            "    sub $44, %esp\n"                                                                \
            "    push %eax\n"                                                                    \
            "    call " #main_function "\n"                                                      \
            "    hlt\n")

/* Enter a loader or a program as the kernel would: %esp at argc, %edx no exit function. */
__attribute__((noreturn)) static inline void nixld_hand_over(unsigned long entry, unsigned long *stack)
{
    __asm__ volatile("mov %0, %%esp\n"
                     "xor %%edx, %%edx\n"
                     "jmp *%1\n"
                     :
                     : "S"(stack), "c"(entry)
                     : "memory");
    __builtin_unreachable();
}

/* See x86_64.h; %esi and %edi are kept across the C call, as %r12 and %r13 are there. */
#define NIXLD_TRAMPOLINE(name, repay_function)                                                   \
    __asm__(".text\n"                                                                            \
            ".type " #name ", @function\n"                                                       \
            #name ":\n"                                                                          \
            "    mov %edx, %esi\n"                                                               \
            "    mov %esp, %edi\n"                                                               \
            "    and $-16, %esp\n"                                                               \
            "    call " #repay_function "\n"                                                     \
            "    mov %edi, %esp\n"                                                               \
            "    mov %esi, %edx\n"                                                               \
            "    xor %ebp, %ebp\n"                                                               \
            "    jmp *%eax\n")

#endif
