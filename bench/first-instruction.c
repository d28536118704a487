/*
 * The agent of the supervisor benchmark's create-to-exec measurement
 * (supervisor/benches/supervisor.rs): as its very first action it reads
 * CLOCK_REALTIME and writes the nanoseconds since the epoch, in decimal and
 * a newline, to stdout; then it exits 0.
 *
 * No C library: the entry point is _start itself, and the clock is read by
 * the clock_gettime system call (the vDSO would need the auxiliary vector
 * parsed first). So nothing runs between the kernel's execve and the clock
 * read but the dozen instructions of _start's prologue: no dynamic loader,
 * no libc start-up, no relocations. Built by the benchmark with
 *
 *     gcc -O2 -static -nostdlib -ffreestanding -fno-stack-protector -o first-instruction first-instruction.c
 *
 * CLOCK_REALTIME is the host's: the jail has no time namespace.
 */

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "first-instruction.c: x86_64 or aarch64 only"
#endif

#define CLOCK_REALTIME 0

#if defined(__x86_64__)
#define SYS_write 1
#define SYS_exit 60
#define SYS_clock_gettime 228
static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}
#else
#define SYS_write 64
#define SYS_exit 93
#define SYS_clock_gettime 113
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
#endif

struct timespec_k {
    long tv_sec;
    long tv_nsec;
};

__attribute__((noreturn, used)) void _start(void)
{
    struct timespec_k ts;
    long rc = sys3(SYS_clock_gettime, CLOCK_REALTIME, (long)&ts, 0);
    if (rc != 0)
        sys3(SYS_exit, 1, 0, 0);
    unsigned long ns = (unsigned long)ts.tv_sec * 1000000000UL + (unsigned long)ts.tv_nsec;
    char buf[24];
    int i = sizeof buf;
    buf[--i] = '\n';
    do {
        buf[--i] = (char)('0' + ns % 10);
        ns /= 10;
    } while (ns != 0);
    sys3(SYS_write, 1, (long)(buf + i), (long)(sizeof buf - i));
    sys3(SYS_exit, 0, 0, 0);
    __builtin_unreachable();
}
