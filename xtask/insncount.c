/* Measurement shim (not part of pktguard): LD_PRELOAD it into a process
 * that loads BPF programs; every BPF_PROG_LOAD is first tried with a
 * 16 MiB verifier log at level 1, and on success the verifier's last
 * "processed N insns" line is printed to stderr with the program's name.
 * Kernels before 5.16 report no verified-instruction count otherwise.
 *   gcc -O2 -shared -fPIC -o insncount.so xtask/insncount.c -ldl
 *   PKTGUARD_GUEST_PRELOAD=$PWD/insncount.so cargo xtask vm-test --kernel 4.19 --only verifier */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

static char logbuf[(16 << 20) - 1];

long syscall(long n, ...)
{
	va_list ap;
	long a[6];
	static long (*real)(long, ...);

	va_start(ap, n);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if (n == SYS_bpf && a[0] == BPF_PROG_LOAD) {
		union bpf_attr attr;
		size_t size = (size_t)a[2] < sizeof(attr) ? (size_t)a[2] : sizeof(attr);

		memset(&attr, 0, sizeof(attr));
		memcpy(&attr, (void *)a[1], size);
		attr.log_level = 1;
		attr.log_buf = (unsigned long)logbuf;
		attr.log_size = sizeof(logbuf);
		logbuf[0] = 0;
		long fd = real(n, a[0], &attr, size);
		if (fd >= 0) {
			char *p = NULL, *q = logbuf;
			while ((q = strstr(q, "processed ")))
				p = q++;
			if (p) {
				char *end = strchr(p, '\n');
				if (end)
					*end = 0;
			}
			fprintf(stderr, "insncount %.16s insn_cnt=%u: %s\n", attr.prog_name,
				attr.insn_cnt, p ? p : "(no count in the log)");
			return fd;
		}
	}
	return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
