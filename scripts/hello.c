/*
 * The program inside registry/hello: prints a greeting and exits 0.
 *
 * No libc: raw Linux syscalls through inline assembly, so that the static
 * binary is under 1 KB. One source for both platforms of the image:
 * x86-64 (write = 1, exit_group = 231, `syscall`) and AArch64 (write = 64,
 * exit_group = 94, `svc #0`). Built by scripts/make-example-registry.py
 * with gcc (linux/amd64) and aarch64-linux-gnu-gcc (linux/arm64):
 *
 *   gcc -static -nostdlib -Os -fno-ident -fno-asynchronous-unwind-tables \
 *       -fno-stack-protector -Wl,--build-id=none -Wl,-z,noseparate-code \
 *       -s -o hello hello.c
 */

static const char greeting[] = "Hello from the ir-server example registry!\n";

#if defined(__x86_64__)
#define SYS_WRITE 1
#define SYS_EXIT_GROUP 231
static long syscall3(long number, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(number), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define SYS_WRITE 64
#define SYS_EXIT_GROUP 94
static long syscall3(long number, long a, long b, long c)
{
	register long x8 __asm__("x8") = number;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2)
			 : "memory");
	return x0;
}
#else
#error "hello.c is written for x86-64 and AArch64"
#endif

__attribute__((noreturn)) void _start(void)
{
	long status = 0;
	if (syscall3(SYS_WRITE, 1, (long)greeting, sizeof greeting - 1) !=
	    (long)(sizeof greeting - 1))
		status = 1;
	for (;;)
		syscall3(SYS_EXIT_GROUP, status, 0, 0);
}
