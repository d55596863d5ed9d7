/* aarch64: system calls, the entry stub, the hand-over to the loader and the trampoline.
 * Compiled with a cross compiler where one is installed; not run here (see the README). */

#ifndef NIXLD_ARCH_H
#define NIXLD_ARCH_H

#define NIXLD_SYSTEM "aarch64_linux"
#define NIXLD_ELF_CLASS 2 /* ELFCLASS64 */
#define NIXLD_ELF_MACHINE 183 /* EM_AARCH64 */

/* The open flag that differs between architectures. */
#define NIXLD_O_DIRECTORY 040000

#define NIXLD_SYS_openat 56
#define NIXLD_SYS_statx 291
#define NIXLD_SYS_faccessat 48
#define NIXLD_SYS_close 57
#define NIXLD_SYS_read 63
#define NIXLD_SYS_write 64
#define NIXLD_SYS_pread 67
#define NIXLD_SYS_exit_group 94
#define NIXLD_SYS_munmap 215
#define NIXLD_SYS_execve 221
#define NIXLD_SYS_mmap 222

static inline long nixld_syscall6(long number, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = number;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
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

/* As on x86-64: 32 bytes below the kernel's stack are left free for nixld_add_entries. */
#define NIXLD_ENTRY_STUB(main_function)                                                          \
    __asm__(".text\n"                                                                            \
            ".global _start\n"                                                                   \
            ".type _start, %function\n"                                                          \
            "_start:\n"                                                                          \
            "    mov x29, #0\n"                                                                  \
            "    mov x30, #0\n"                                                                  \
            "    mov x0, sp\n"                                                                   \
            "    sub sp, sp, #32\n"                                                              \
            "    bl " #main_function "\n"                                                        \
            "    brk #0\n")

/* Enter a loader or a program as the kernel would: sp at argc, x0 no exit function, no frame
 * record. `entry` and `stack` are held in x16 and x17, so that zeroing x29 and x30 cannot
 * clobber them. */
__attribute__((noreturn)) static inline void nixld_hand_over(unsigned long entry, unsigned long *stack)
{
    register unsigned long x16 __asm__("x16") = entry;
    register unsigned long *x17 __asm__("x17") = stack;
    __asm__ volatile("mov sp, %1\n"
                     "mov x0, #0\n"
                     "mov x29, #0\n"
                     "mov x30, #0\n"
                     "br %0\n"
                     :
                     : "r"(x16), "r"(x17)
                     : "memory", "x0", "x30");
    __builtin_unreachable();
}

/* See x86_64.h; the loader's exit function is in x0, kept in x19 across the C call, the
 * stack pointer in x20. */
#define NIXLD_TRAMPOLINE(name, repay_function)                                                   \
    __asm__(".text\n"                                                                            \
            ".type " #name ", %function\n"                                                       \
            #name ":\n"                                                                          \
            "    mov x19, x0\n"                                                                  \
            "    mov x20, sp\n"                                                                  \
            "    bl " #repay_function "\n"                                                       \
            "    mov sp, x20\n"                                                                  \
            "    mov x16, x0\n"                                                                  \
            "    mov x0, x19\n"                                                                  \
            "    mov x29, #0\n"                                                                  \
            "    mov x30, #0\n"                                                                  \
            "    br x16\n")

#endif
