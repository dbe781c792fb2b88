/* A freestanding test guest for berth-vmm. It runs in ring 0, long mode, with the
   VMM's identity page tables, and does what the kernel command line's `test=NAME`
   says, reporting on COM1 and ending with a byte to the debug-exit port (0x501). */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d) {
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
#define barrier() __asm__ volatile("mfence" ::: "memory")

static void putc(char c) { while (!(inb(0x3f8 + 5) & 0x20)) {} outb(0x3f8, (u8)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void puthex(u64 v, int digits) { for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]); }
static void putdec(u64 v) { char b[24]; int n = 0; do { b[n++] = '0' + v % 10; v /= 10; } while (v); while (n) putc(b[--n]); }
static void debug_exit(u8 code) { outb(0x501, code); for (;;) __asm__ volatile("hlt"); }

static int streq(const char *a, const char *b) { while (*a && *a == *b) { a++; b++; } return *a == *b; }

/* Value of `test=` in the command line, copied into buf. */
static const char *test_name(const u8 *bp, char *buf) {
	const char *cl = (const char *)(u64)*(const u32 *)(bp + 0x228);
	for (const char *p = cl; *p; p++) {
		if ((p == cl || p[-1] == ' ') && p[0] == 't' && p[1] == 'e' && p[2] == 's' && p[3] == 't' && p[4] == '=') {
			int n = 0;
			for (p += 5; *p && *p != ' ' && n < 31; p++) buf[n++] = *p;
			buf[n] = 0;
			return buf;
		}
	}
	return "";
}

/* ---- virtio-mmio, modern interface, one queue, polled ---- */
#define QSZ 8
struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct avail { u16 flags; u16 idx; u16 ring[QSZ]; u16 event; };
struct used_elem { u32 id; u32 len; };
struct used { u16 flags; u16 idx; struct used_elem ring[QSZ]; u16 event; };
static struct desc descs[QSZ] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));
static volatile u32 *vdev;

#define R(off) vdev[(off) / 4]

static volatile u32 *find_device(u32 type) {
	for (u64 a = 0xd0000000; a < 0xd0000000 + 16 * 0x1000; a += 0x1000) {
		volatile u32 *r = (volatile u32 *)a;
		if (r[0] == 0x74726976 && r[2] == type) return r;
	}
	return 0;
}

/* Negotiates VERSION_1 (+ extra features in the low word) and sets up queue 0. */
static int virtio_init(u32 type, u32 want_lo) {
	vdev = find_device(type);
	if (!vdev || R(0x004) != 2) return -1;
	R(0x070) = 0;
	R(0x070) = 1 | 2;
	R(0x014) = 0;
	u32 lo = R(0x010) & want_lo;
	R(0x024) = 0; R(0x020) = lo;
	R(0x024) = 1; R(0x020) = 1; /* VIRTIO_F_VERSION_1 */
	R(0x070) = 1 | 2 | 8;
	if (!(R(0x070) & 8)) return -2;
	R(0x030) = 0;
	if (R(0x034) < QSZ) return -3;
	R(0x038) = QSZ;
	R(0x080) = (u32)(u64)descs; R(0x084) = 0;
	R(0x090) = (u32)(u64)&avail; R(0x094) = 0;
	R(0x0a0) = (u32)(u64)&used; R(0x0a4) = 0;
	R(0x044) = 1;
	R(0x070) = 1 | 2 | 4 | 8;
	return 0;
}

/* Publishes the chain starting at descriptor 0, notifies, waits; returns used length. */
static int virtio_submit(void) {
	u16 before = used.idx;
	avail.ring[avail.idx % QSZ] = 0;
	barrier();
	avail.idx++;
	barrier();
	R(0x050) = 0;
	while (*(volatile u16 *)&used.idx == before) {}
	barrier();
	R(0x064) = R(0x060);
	return (int)used.ring[before % QSZ].len;
}

static void set_desc(int i, void *addr, u32 len, u16 flags) {
	descs[i].addr = (u64)addr; descs[i].len = len; descs[i].flags = flags; descs[i].next = (u16)(i + 1);
}
#define F_NEXT 1
#define F_WRITE 2

struct blk_req { u32 type; u32 reserved; u64 sector; };
static struct blk_req req;
static u8 data[512];
static volatile u8 status;

static int blk_rw(u32 type, u64 sector, u32 len) {
	req.type = type; req.reserved = 0; req.sector = sector;
	status = 0xff;
	set_desc(0, &req, sizeof req, F_NEXT);
	if (len) {
		set_desc(1, data, len, F_NEXT | (type == 1 ? 0 : F_WRITE));
		set_desc(2, (void *)&status, 1, F_WRITE);
	} else {
		set_desc(1, (void *)&status, 1, F_WRITE);
	}
	int n = virtio_submit();
	puts(" used="); putdec((u64)n);
	puts(" status="); putdec(status);
	return status;
}

static void test_blk(int read_only) {
	int r = virtio_init(2, (1 << 5) | (1 << 9));
	if (r) { puts("blk init failed "); putdec((u64)-r); debug_exit(2); }
	volatile u32 *cfg = vdev + 0x100 / 4;
	puts("capacity="); putdec(cfg[0] | ((u64)cfg[1] << 32));
	puts(" ro="); putdec((R(0x010) >> 5) & 1);
	puts("\nread:"); blk_rw(0, 0, 512);
	puts(" data="); for (int i = 0; i < 16 && data[i] >= ' '; i++) putc((char)data[i]);
	for (int i = 0; i < 512; i++) data[i] = (u8)('A' + i % 26);
	puts("\nwrite:"); blk_rw(1, 1, 512);
	puts("\nflush:"); blk_rw(4, 0, 0);
	puts("\nid:"); blk_rw(8, 0, 20);
	puts(" id="); for (int i = 0; i < 20 && data[i]; i++) putc((char)data[i]);
	puts("\nbeyond:"); blk_rw(0, cfg[0], 512);
	puts("\n");
	debug_exit(read_only ? 11 : 10);
}

static void test_rng(void) {
	if (virtio_init(4, 0)) { puts("rng init failed\n"); debug_exit(2); }
	for (int round = 0; round < 2; round++) {
		memset(data, 0, 32);
		set_desc(0, data, 32, F_WRITE);
		descs[0].flags = F_WRITE;
		int n = virtio_submit();
		puts("rng used="); putdec((u64)n); puts(" bytes=");
		for (int i = 0; i < 32; i++) puthex(data[i], 2);
		puts("\n");
	}
	debug_exit(20);
}

static void test_cpuid(u32 id) {
	u32 a, b, c, d;
	cpuid(1, &a, &b, &c, &d);
	puts("apic="); putdec(b >> 24);
	puts(" count="); putdec((b >> 16) & 0xff);
	puts(" hypervisor="); putdec(c >> 31);
	cpuid(0x40000000, &a, &b, &c, &d);
	u32 sig[4] = { b, c, d, 0 };
	puts(" sig="); puts((const char *)sig);
	puts("\n");
	debug_exit((u8)(30 + id));
}

static void test_bootparams(const u8 *bp) {
	u8 n = bp[0x1e8];
	const u8 *e = bp + 0x2d0;
	u64 ram = 0;
	puts("e820");
	for (int i = 0; i < n; i++, e += 20) {
		u64 addr = *(const u64 *)e, size = *(const u64 *)(e + 8);
		u32 type = *(const u32 *)(e + 16);
		puts(" "); puthex(addr, 8); puts("+"); puthex(size, 8); puts(":"); putdec(type);
		if (type == 1) ram += size;
	}
	puts("\nram_kib="); putdec(ram >> 10);
	puts(" loader="); puthex(bp[0x210], 2);
	puts(" rtc_century="); outb(0x70, 0x32); puthex(inb(0x71), 2);
	puts(" rtc_year="); outb(0x70, 0x09); puthex(inb(0x71), 2);
	puts("\n");
	debug_exit(40);
}

/* Every exit path a guest can cause without devices. */
static void test_exits(void) {
	outb(0x80, 0x12);                         /* IoOut to an unclaimed port */
	u8 v = inb(0x81);                         /* IoIn: unclaimed reads 0xff */
	volatile u32 *hole = (volatile u32 *)0xe0000000;
	*hole = 0x1234;                           /* MmioWrite, unclaimed */
	u32 m = *hole;                            /* MmioRead: 0xffffffff */
	puts(v == 0xff && m == 0xffffffff ? "exits ok\n" : "exits bad\n");
	/* HLT ends this vCPU (no irqchip): returned to _start's hlt. */
}

void guest_main(const u8 *bp, u32 id) {
	char buf[32];
	const char *t = test_name(bp, buf);
	if (streq(t, "smp")) { putc((char)('0' + id)); return; }
	if (id != 0) return;
	if (streq(t, "hello")) { puts("hello from the guest\n"); debug_exit(0); }
	if (streq(t, "exits")) { test_exits(); return; }
	if (streq(t, "cpuid")) test_cpuid(id);
	if (streq(t, "bootparams")) test_bootparams(bp);
	if (streq(t, "blk")) test_blk(0);
	if (streq(t, "blk-ro")) test_blk(1);
	if (streq(t, "rng")) test_rng();
	if (streq(t, "reset")) { outb(0x64, 0xfe); }
	if (streq(t, "poweroff")) { outw(0x604, (5 << 10) | (1 << 13)); }
	if (streq(t, "triple")) { __asm__ volatile("ud2"); }
	puts("unknown test\n");
	debug_exit(1);
}
