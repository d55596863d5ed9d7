/* x86-64: system calls, the entry stub, the hand-over to the loader and the trampoline.
 * Nothing but these; everything above this layer is the same C on every architecture. */

#ifndef NIXLD_ARCH_H
#define NIXLD_ARCH_H

#define NIXLD_SYSTEM "x86_64_linux"
#define NIXLD_ELF_CLASS 2 /* ELFCLASS64 */
#define NIXLD_ELF_MACHINE 62 /* EM_X86_64 */

/* The open flag that differs between architectures. */
#define NIXLD_O_DIRECTORY 0200000

#define NIXLD_SYS_read 0
#define NIXLD_SYS_write 1
#define NIXLD_SYS_close 3
#define NIXLD_SYS_mmap 9
#define NIXLD_SYS_munmap 11
#define NIXLD_SYS_pread 17
#define NIXLD_SYS_execve 59
#define NIXLD_SYS_exit_group 231
#define NIXLD_SYS_openat 257
#define NIXLD_SYS_statx 332
#define NIXLD_SYS_faccessat 269

static inline long nixld_syscall6(long number, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

static inline long nixld_syscall3(long number, long a, long b, long c)
{
    return nixld_syscall6(number, a, b, c, 0, 0, 0);
}

static inline long nixld_mmap(void *address, unsigned long length, int protection, int flags, int fd,
                              unsigned long offset)
{
    return nixld_syscall6(NIXLD_SYS_mmap, (long)address, (long)length, protection, flags, fd, (long)offset);
}

static inline long nixld_statx(int fd, const char *path, int flags, unsigned int mask, void *buffer)
{
    return nixld_syscall6(NIXLD_SYS_statx, fd, (long)path, flags, mask, (long)buffer, 0);
}

static inline long nixld_pread(int fd, void *buffer, unsigned long size, unsigned long offset)
{
    return nixld_syscall6(NIXLD_SYS_pread, fd, (long)buffer, (long)size, (long)offset, 0, 0);
}

/* The kernel starts us with %rsp at argc; C gets that pointer and a 16-byte aligned stack
 * that begins 32 bytes below the kernel's, which nixld_add_entries may then use. */
#define NIXLD_ENTRY_STUB(main_function)                                                          \
    __asm__(".text\n"                                                                            \
            ".global _start\n"                                                                   \
            ".type _start, @function\n"                                                          \
            "_start:\n"                                                                          \
            "    xor %ebp, %ebp\n"                                                               \
            "    mov %rsp, %rdi\n"                                                               \
            "    and $-16, %rsp\n"                                                               \
            "    sub $32, %rsp\n"                                                                \
            "    call " #main_function "\n"                                                      \
            "    hlt\n")

/* Enter a loader or a program as the kernel would: %rsp at argc, %rdx no exit function. */
__attribute__((noreturn)) static inline void nixld_hand_over(unsigned long entry, unsigned long *stack)
{
    __asm__ volatile("mov %0, %%rsp\n"
                     "xor %%edx, %%edx\n"
                     "jmp *%1\n"
                     :
                     : "S"(stack), "c"(entry)
                     : "memory");
    __builtin_unreachable();
}

/* Where the loader jumps instead of the program's entry, on the stack the program starts on:
 * the C function takes back what was lent and returns the program's entry. %rdx, the
 * loader's exit function for atexit, is kept in %r12 for the program, the stack pointer in
 * %r13. */
#define NIXLD_TRAMPOLINE(name, repay_function)                                                   \
    __asm__(".text\n"                                                                            \
            ".type " #name ", @function\n"                                                       \
            #name ":\n"                                                                          \
            "    mov %rdx, %r12\n"                                                               \
            "    mov %rsp, %r13\n"                                                               \
            "    and $-16, %rsp\n"                                                               \
            "    call " #repay_function "\n"                                                     \
            "    mov %r13, %rsp\n"                                                               \
            "    mov %r12, %rdx\n"                                                               \
            "    xor %ebp, %ebp\n"                                                               \
            "    jmp *%rax\n")

#endif
