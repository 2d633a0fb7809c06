/*
 * The program inside registry/hello: prints a greeting and exits 0.
 *
 * No libc: raw Linux x86-64 syscalls (write = 1, exit_group = 231) through
 * inline assembly, so that the static binary is under 1 KB. Built by
 * scripts/make-example-registry.py with:
 *
 *   gcc -static -nostdlib -Os -fno-ident -fno-asynchronous-unwind-tables \
 *       -fno-stack-protector -Wl,--build-id=none -Wl,-z,noseparate-code \
 *       -s -o hello hello.c
 */

static const char greeting[] = "Hello from the ir-server example registry!\n";

static long syscall3(long number, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(number), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noreturn)) void _start(void)
{
	long status = 0;
	if (syscall3(1 /* write */, 1, (long)greeting, sizeof greeting - 1) !=
	    (long)(sizeof greeting - 1))
		status = 1;
	for (;;)
		syscall3(231 /* exit_group */, status, 0, 0);
}
