/* vsock-echo: both ends of berth's hybrid vsock, for scripts/vm/vmm-nested.sh.
 *
 *   vsock-echo guest-connect PORT MSG      (in the guest) connect to CID 2:PORT, send
 *                                          MSG, print the reply
 *   vsock-echo guest-listen PORT           (in the guest) accept one stream on PORT,
 *                                          answer "echo: " + what it reads
 *   vsock-echo host-listen PATH            (host) accept one unix stream on PATH,
 *                                          answer "pong: " + what it reads
 *   vsock-echo host-connect PATH PORT MSG  (host) CONNECT PORT through the VMM's
 *                                          socket, send MSG, print the reply
 * Exit status 0 on success. Built static with gcc.
 */
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

/* Reads what one write of the peer sent (these messages are small). */
static ssize_t read_some(int fd, char *buf, size_t len) {
	ssize_t n = read(fd, buf, len - 1);
	if (n <= 0) { fprintf(stderr, "read: %s\n", n == 0 ? "EOF" : "error"); exit(1); }
	buf[n] = 0;
	return n;
}

static void answer(int fd, const char *prefix) {
	char buf[256], out[300];
	read_some(fd, buf, sizeof buf);
	snprintf(out, sizeof out, "%s%s", prefix, buf);
	if (write(fd, out, strlen(out)) < 0) die("write");
}

static void send_and_print(int fd, const char *msg) {
	char buf[256];
	if (write(fd, msg, strlen(msg)) < 0) die("write");
	read_some(fd, buf, sizeof buf);
	printf("reply: %s\n", buf);
}

static int unix_socket(const char *path, struct sockaddr_un *sa) {
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0) die("socket");
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	strncpy(sa->sun_path, path, sizeof sa->sun_path - 1);
	return fd;
}

int main(int argc, char **argv) {
	/* Unbuffered, so a killed run still shows how far it got; EPIPE instead of SIGPIPE. */
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "guest-connect")) {
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = atoi(argv[2]) };
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) die("vsock connect");
		send_and_print(fd, argv[3]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "guest-listen")) {
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = atoi(argv[2]) };
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1)) die("vsock listen");
		int c = accept(fd, 0, 0);
		if (c < 0) die("accept");
		printf("accepted\n");
		answer(c, "echo: ");
		close(c);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "host-listen")) {
		struct sockaddr_un sa;
		int fd = unix_socket(argv[2], &sa);
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1)) die("unix listen");
		int c = accept(fd, 0, 0);
		if (c < 0) die("accept");
		answer(c, "pong: ");
		close(c);
		unlink(argv[2]);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "host-connect")) {
		struct sockaddr_un sa;
		char line[64];
		int fd = unix_socket(argv[2], &sa);
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) die("unix connect");
		dprintf(fd, "CONNECT %s\n", argv[3]);
		size_t n = 0;
		while (n < sizeof line - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n') n++;
		line[n] = 0;
		if (strncmp(line, "OK ", 3)) { fprintf(stderr, "handshake: got '%s'\n", line); return 1; }
		printf("%s\n", line);
		send_and_print(fd, argv[4]);
		return 0;
	}
	fprintf(stderr, "usage: see the header of vsock-echo.c\n");
	return 2;
}
