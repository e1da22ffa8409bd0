/* The CVE-2019-5736 family: for SECONDS, watch every other process in our
 * PID namespace and try to read its environment and open its executable.
 * A host-side helper (exec's) that is dumpable gives both away.
 * Usage: environ_snoop MARKER SECONDS */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *marker = argv[1];
    time_t end = time(NULL) + atoi(argv[2]);
    int found = 0, exe = 0;
    char path[64], buf[65536];
    printf("ready\n");
    fflush(stdout);
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == getpid()) continue;
            snprintf(path, sizeof path, "/proc/%d/environ", pid);
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n <= 0) continue;
            for (ssize_t i = 0; i < n; i++) if (!buf[i]) buf[i] = '\n';
            buf[n] = 0;
            if (strstr(buf, marker)) {
                found++;
                snprintf(path, sizeof path, "/proc/%d/exe", pid);
                int x = open(path, O_RDONLY);
                if (x >= 0) { exe++; close(x); }
            }
        }
        closedir(d);
    }
    printf("environ read %d times, exe opened %d times\n", found, exe);
    return 0;
}
