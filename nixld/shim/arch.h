/* The arch/ layer of the machine being compiled for: system calls, the entry stub, the
 * hand-over and the trampoline. A port is one file in arch/ and one line here. */

#if defined(__x86_64__)
#include "arch/x86_64.h"
#elif defined(__i386__)
#include "arch/i386.h"
#elif defined(__aarch64__)
#include "arch/aarch64.h"
#else
#error "nixld's shim has no arch/ layer for this architecture"
#endif
