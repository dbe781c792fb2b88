/* What memory management costs on this host, to explain the runtime's choices
 * (docs/performance.md): a page fault, fork of a process with 16 MiB touched against
 * vfork, each followed by exit or by exec of a small static binary, and the three ways to
 * get a read-only view of a binary: a detached overlayfs (berth), a bind mount made
 * read-only and lazily unmounted (crun), a detached bind mount (open_tree). Prints
 * microseconds and ratios. Needs root (mounts).
 *
 *   sh benches/host/run.sh
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define PAGES 4096
#define ROUNDS 30

static double spawn(int use_vfork, const char *exe) {
    double t = now();
    for (int k = 0; k < ROUNDS; k++) {
        pid_t c = use_vfork ? vfork() : fork();
        if (c == 0) {
            if (exe) execl(exe, "true", (char *)0);
            _exit(0);
        }
        waitpid(c, 0, 0);
    }
    return (now() - t) / ROUNDS * 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";  /* holds a copy of a static binary "true" */
    char exe[512], tgt[512], lower[600];
    snprintf(exe, sizeof exe, "%s/true", dir);
    snprintf(tgt, sizeof tgt, "%s/bind-target", dir);
    char *p = mmap(0, PAGES * 4096L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t = now();
    for (int i = 0; i < PAGES; i++) p[i * 4096L] = 1;
    double fault = (now() - t) / PAGES * 1e6;
    printf("anonymous page fault              %8.1f us\n", fault);
    pid_t c = fork();
    if (c == 0) { sleep(1); _exit(0); }
    t = now();
    for (int i = 0; i < PAGES; i++) p[i * 4096L] = 2;
    printf("copy-on-write fault after fork    %8.1f us\n", (now() - t) / PAGES * 1e6);
    waitpid(c, 0, 0);
    double f = spawn(0, 0), v = spawn(1, 0), fe = spawn(0, exe), ve = spawn(1, exe);
    printf("fork + exit (16 MiB touched)      %8.0f us\n", f);
    printf("vfork + exit                      %8.0f us   fork/vfork %.1fx\n", v, f / v);
    printf("fork + exec static true           %8.0f us\n", fe);
    printf("vfork + exec static true          %8.0f us   fork/vfork %.1fx\n", ve, fe / ve);

    int d = open(dir, O_RDONLY | O_DIRECTORY);
    if (d < 0) die(dir);
    snprintf(lower, sizeof lower, "/proc/self/fd/%d:/etc", d);
    double ovl = 0, bind = 0, tree = 0;
    for (int i = 0; i < ROUNDS; i++) {
        t = now();
        int ctx = syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
        if (ctx < 0 || syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0 ||
            syscall(SYS_fsconfig, ctx, FSCONFIG_CMD_CREATE, 0, 0, 0) < 0) die("overlay");
        int m = syscall(SYS_fsmount, ctx, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
        close(ctx);
        int fd = openat(m, "true", O_RDONLY | O_CLOEXEC);
        close(m);
        close(fd);
        ovl += now() - t;

        t = now();
        close(open(tgt, O_CREAT | O_RDWR, 0600));
        if (mount(exe, tgt, 0, MS_BIND, 0) || mount("", tgt, 0, MS_BIND | MS_REMOUNT | MS_RDONLY, 0))
            die("bind");
        fd = open(tgt, O_PATH | O_CLOEXEC);
        umount2(tgt, MNT_DETACH);
        unlink(tgt);
        close(fd);
        bind += now() - t;

        t = now();
        m = syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};
        if (m < 0 || syscall(SYS_mount_setattr, m, "", AT_EMPTY_PATH, &a, sizeof a)) die("open_tree");
        fd = openat(m, "true", O_RDONLY | O_CLOEXEC);
        close(m);
        close(fd);
        tree += now() - t;
    }
    ovl *= 1e6 / ROUNDS, bind *= 1e6 / ROUNDS, tree *= 1e6 / ROUNDS;
    printf("detached overlay: make + dissolve %8.0f us\n", ovl);
    printf("bind, ro, lazy umount (crun)      %8.0f us   overlay/this %.1fx\n", bind, ovl / bind);
    printf("detached bind (open_tree)         %8.0f us   overlay/this %.1fx\n", tree, ovl / tree);
    return 0;
}
