/* boottime MARKER CMD [ARGS...]
 *
 * Runs CMD with stdin from /dev/null and its stdout and stderr on one pipe, copies
 * everything CMD prints to our stderr, and prints on stdout one line:
 *     <ms until MARKER first appeared> <ms until CMD exited> <CMD's exit status>
 * measured from just before fork on CLOCK_MONOTONIC (-1 when MARKER never appeared;
 * the status is 128+N when CMD was killed by signal N). Exit status: 0 when the marker
 * appeared, 1 when not, 2 on a usage or system error.
 * Built statically by scripts/vm/bench-vmm.sh for the test VM (no libc there). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: boottime MARKER CMD [ARGS...]\n");
        return 2;
    }
    const char *marker = argv[1];
    size_t mlen = strlen(marker);
    if (mlen == 0 || mlen > 200) {
        fprintf(stderr, "boottime: MARKER must be 1..200 bytes\n");
        return 2;
    }
    int p[2];
    if (pipe(p) < 0) {
        perror("boottime: pipe");
        return 2;
    }
    double start = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("boottime: fork");
        return 2;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0)
            _exit(127);
        close(p[0]);
        close(p[1]);
        execvp(argv[2], argv + 2);
        fprintf(stderr, "boottime: exec %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    /* The marker may straddle two reads: keep the last mlen-1 bytes in front. */
    char buf[4096 + 256];
    size_t kept = 0;
    double t_marker = -1;
    for (;;) {
        ssize_t n = read(p[0], buf + kept, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        double t = now_ms();
        if (write(2, buf + kept, n) < 0) {
            /* stderr gone: keep measuring anyway. */
        }
        size_t len = kept + n;
        if (t_marker < 0 && memmem(buf, len, marker, mlen))
            t_marker = t - start;
        kept = len < mlen - 1 ? len : mlen - 1;
        memmove(buf, buf + len - kept, kept);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("boottime: waitpid");
            return 2;
        }
    }
    double t_exit = now_ms() - start;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("%.1f %.1f %d\n", t_marker, t_exit, code);
    return t_marker < 0;
}
