/* The system calls Docker's default seccomp profile refuses, each tried for
 * real; prints "name ok" or "name errno N". With KEY_DESCRIPTION given,
 * keyctl searches root's user keyring for a key the host stored there and
 * prints its payload if it can read it. Usage: syscalls [KEY_DESCRIPTION]
 *
 * syscalls --lift-limits: the way out of --pids-limit and --memory: a new
 * user namespace (where we hold every capability), a new mount and cgroup
 * namespace, a fresh cgroup2 mount of our own cgroup, and "max" written
 * into its limits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long result) {
    if (result >= 0) printf("%s ok\n", name);
    else printf("%s errno %d\n", name, errno);
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd >= 0) { if (write(fd, text, strlen(text)) < 0) {} close(fd); }
}

static int lift_limits(void) {
    report("unshare_user_mount_cgroup", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP));
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", "0 0 1");
    write_file("/proc/self/gid_map", "0 0 1");
    mkdir("/tmp/cg", 0755);
    report("mount_cgroup2", mount("none", "/tmp/cg", "cgroup2", 0, NULL));
    const char *limits[] = {"/tmp/cg/pids.max", "/tmp/cg/memory.max"};
    for (int i = 0; i < 2; i++) {
        int fd = open(limits[i], O_WRONLY);
        long n = fd < 0 ? -1 : write(fd, "max", 3);
        report(limits[i] + 8, n);
        if (fd >= 0) close(fd);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--lift-limits") == 0)
        return lift_limits();
    if (argc > 1) {
        long id = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -4 /* user keyring */, "user", argv[1], 0);
        report("keyctl", id);
        if (id >= 0) {
            char buf[256] = {0};
            if (syscall(SYS_keyctl, 11 /* KEYCTL_READ */, id, buf, sizeof buf - 1) >= 0)
                printf("key payload %s\n", buf);
        }
    }
    struct perf_event_attr attr = {.type = PERF_TYPE_SOFTWARE, .size = sizeof attr,
                                   .config = PERF_COUNT_SW_TASK_CLOCK, .exclude_kernel = 1};
    report("perf_event_open", syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    struct io_uring_params params = {0};
    report("io_uring_setup", syscall(SYS_io_uring_setup, 4, &params));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    int persona = personality(0xffffffff);
    report("personality_addr_no_randomize", personality(persona | ADDR_NO_RANDOMIZE));
    report("unshare_user", unshare(CLONE_NEWUSER));
    return 0;
}
