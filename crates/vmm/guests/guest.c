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

/* ---- virtio-mmio, modern interface, polled (no interrupts) ---- */
#define QSZ 8
struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct avail { u16 flags; u16 idx; u16 ring[QSZ]; u16 event; };
struct used_elem { u32 id; u32 len; };
struct used { u16 flags; u16 idx; struct used_elem ring[QSZ]; u16 event; };
struct vq {
	struct desc d[QSZ] __attribute__((aligned(16)));
	struct avail a __attribute__((aligned(2)));
	struct used u __attribute__((aligned(4)));
	u16 last_used;
};
static struct vq vqs[3];
static struct desc *descs = vqs[0].d;
static volatile u32 *vdev;

#define R(off) vdev[(off) / 4]

static volatile u32 *find_device(u32 type) {
	for (u64 a = 0xd0000000; a < 0xd0000000 + 16 * 0x1000; a += 0x1000) {
		volatile u32 *r = (volatile u32 *)a;
		if (r[0] == 0x74726976 && r[2] == type) return r;
	}
	return 0;
}

/* Negotiates VERSION_1 (+ extra features in the low word) and sets up queues 0..n-1. */
static int virtio_init(u32 type, u32 want_lo, int nqueues) {
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
	for (int i = 0; i < nqueues; i++) {
		R(0x030) = (u32)i;
		if (R(0x034) < QSZ) return -3;
		R(0x038) = QSZ;
		R(0x080) = (u32)(u64)vqs[i].d; R(0x084) = 0;
		R(0x090) = (u32)(u64)&vqs[i].a; R(0x094) = 0;
		R(0x0a0) = (u32)(u64)&vqs[i].u; R(0x0a4) = 0;
		R(0x044) = 1;
	}
	R(0x070) = 1 | 2 | 4 | 8;
	return 0;
}

/* Makes descriptor `head` of queue `q` available and notifies. */
static void vq_publish(int q, u16 head) {
	struct vq *v = &vqs[q];
	v->a.ring[v->a.idx % QSZ] = head;
	barrier();
	v->a.idx++;
	barrier();
	R(0x050) = (u32)q;
}

/* Waits for the next used element of queue `q`. */
static struct used_elem vq_next_used(int q) {
	struct vq *v = &vqs[q];
	while (*(volatile u16 *)&v->u.idx == v->last_used) {}
	barrier();
	struct used_elem e = v->u.ring[v->last_used % QSZ];
	v->last_used++;
	R(0x064) = R(0x060);
	return e;
}

/* Publishes the chain starting at descriptor 0 of queue 0, waits; returns used length. */
static int virtio_submit(void) {
	vq_publish(0, 0);
	return (int)vq_next_used(0).len;
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
	int r = virtio_init(2, (1 << 5) | (1 << 9), 1);
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
	if (virtio_init(4, 0, 1)) { puts("rng init failed\n"); debug_exit(2); }
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

/* ---- virtio-vsock: one guest-initiated and one host-initiated stream ---- */
struct vhdr { u64 src_cid, dst_cid; u32 src_port, dst_port, len; u16 type, op; u32 flags, buf_alloc, fwd_cnt; } __attribute__((packed));
#define VS_BUF 512
static u8 rxbufs[QSZ][sizeof(struct vhdr) + VS_BUF];
static u8 txbuf[sizeof(struct vhdr) + VS_BUF];
static u8 pkt[sizeof(struct vhdr) + VS_BUF + 1];
static u64 my_cid;
static u32 fwd_cnt;

static void vs_send(u16 op, u32 src_port, u32 dst_port, u32 flags, const char *data) {
	struct vhdr *h = (struct vhdr *)txbuf;
	u32 len = 0;
	while (data && data[len]) { txbuf[sizeof *h + len] = (u8)data[len]; len++; }
	h->src_cid = my_cid; h->dst_cid = 2; h->src_port = src_port; h->dst_port = dst_port;
	h->len = len; h->type = 1; h->op = op; h->flags = flags; h->buf_alloc = 4096; h->fwd_cnt = fwd_cnt;
	vqs[1].d[0].addr = (u64)txbuf; vqs[1].d[0].len = (u32)sizeof *h + len; vqs[1].d[0].flags = 0;
	vq_publish(1, 0);
	vq_next_used(1);
}

/* Next packet from the host (payload NUL-terminated); the buffer is re-posted. */
static struct vhdr *vs_recv(void) {
	struct used_elem e = vq_next_used(0);
	memcpy(pkt, rxbufs[e.id], e.len);
	pkt[e.len] = 0;
	vq_publish(0, (u16)e.id);
	struct vhdr *h = (struct vhdr *)pkt;
	fwd_cnt += h->len;
	return h;
}

static struct vhdr *vs_expect(u16 op) {
	struct vhdr *h = vs_recv();
	while (h->op == 6) h = vs_recv(); /* credit updates carry nothing we need */
	if (h->op != op) { puts("unexpected op "); putdec(h->op); puts("\n"); debug_exit(3); }
	return h;
}

static void test_vsock(void) {
	if (virtio_init(19, 0, 3)) { puts("vsock init failed\n"); debug_exit(2); }
	my_cid = *(volatile u64 *)(vdev + 0x100 / 4);
	puts("cid="); putdec(my_cid); puts("\n");
	for (int i = 0; i < QSZ; i++) {
		vqs[0].d[i].addr = (u64)rxbufs[i]; vqs[0].d[i].len = sizeof rxbufs[i]; vqs[0].d[i].flags = F_WRITE;
		vq_publish(0, (u16)i);
	}
	/* Guest -> host port 5000. */
	vs_send(1, 1234, 5000, 0, 0);
	vs_expect(2);
	puts("connected\n");
	vs_send(5, 1234, 5000, 0, "ping from guest");
	struct vhdr *h = vs_expect(5);
	puts("got: "); puts((const char *)(h + 1)); puts("\n");
	vs_send(4, 1234, 5000, 3, 0);
	vs_expect(3);
	puts("closed\n");
	/* Host -> guest port 6000: refuse the first attempt (as a guest not listening yet
	   would), accept the second. */
	fwd_cnt = 0;
	h = vs_expect(1);
	vs_send(3, h->dst_port, h->src_port, 0, 0);
	puts("refused\n");
	h = vs_expect(1);
	u32 host_port = h->src_port, port = h->dst_port;
	vs_send(2, port, host_port, 0, 0);
	puts("accepted on "); putdec(port); puts("\n");
	h = vs_expect(5);
	char reply[64] = "echo: ";
	memcpy(reply + 6, (const char *)(h + 1), h->len < 50 ? h->len + 1 : 51);
	vs_send(5, port, host_port, 0, reply);
	vs_expect(4);
	vs_send(3, port, host_port, 0, 0);
	puts("done\n");
	debug_exit(50);
}

/* ---- interrupts: virtio-rng's irqfd -> IOAPIC pin -> LAPIC -> IDT vector ---- */
extern void irq_entry(void);
extern volatile u32 irq_count;
struct gate { u16 off0, sel; u8 ist, type; u16 off1; u32 off2, zero; } __attribute__((packed));
static struct gate idt[256] __attribute__((aligned(16)));

static void ioapic_write(u32 reg, u32 v) {
	*(volatile u32 *)0xfec00000 = reg;
	*(volatile u32 *)0xfec00010 = v;
}

static void test_irq(void) {
	const u8 vector = 0x40;
	u64 h = (u64)irq_entry;
	idt[vector] = (struct gate){ (u16)h, 0x08, 0, 0x8e, (u16)(h >> 16), (u32)(h >> 32), 0 };
	struct { u16 limit; u64 base; } __attribute__((packed)) idtr = { sizeof idt - 1, (u64)idt };
	__asm__ volatile("lidt %0" :: "m"(idtr));
	/* KVM's default routing sends a GSI below 16 to the 8259 too; mask it as Linux does,
	   or the PIC delivers through LINT0 (ExtINT) with its unprogrammed vector base. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	*(volatile u32 *)0xfee000f0 = 0x1ff; /* LAPIC software enable, spurious vector 0xff */
	if (virtio_init(4, 0, 1)) { puts("rng init failed\n"); debug_exit(2); }
	u32 gsi = 5; /* the first virtio device */
	ioapic_write(0x10 + 2 * gsi + 1, 0);      /* destination APIC id 0 */
	ioapic_write(0x10 + 2 * gsi, vector);     /* fixed, physical, edge, active high, unmasked */
	set_desc(0, data, 16, F_WRITE);
	descs[0].flags = F_WRITE;
	vq_publish(0, 0);
	/* sti; hlt is atomic with respect to interrupts: the wake-up cannot be missed. */
	while (irq_count == 0) __asm__ volatile("sti; hlt; cli");
	puts("irq count="); putdec(irq_count);
	puts(" used="); putdec(vq_next_used(0).len);
	puts("\n");
	debug_exit(60);
}

/* ---- virtio-net: one frame out, one frame in (ethertype 0x88b5, local experimental) ---- */
static u8 netrx[QSZ][12 + 1522];
static u8 nettx[12 + 60];

static void test_net(void) {
	if (virtio_init(1, 1 << 5, 2)) { puts("net init failed\n"); debug_exit(2); }
	volatile u8 *cfg = (volatile u8 *)(vdev + 0x100 / 4);
	u8 mac[6];
	for (int i = 0; i < 6; i++) mac[i] = cfg[i];
	puts("mac=");
	for (int i = 0; i < 6; i++) { puthex(mac[i], 2); if (i < 5) putc(':'); }
	puts("\n");
	for (int i = 0; i < QSZ; i++) {
		vqs[0].d[i].addr = (u64)netrx[i]; vqs[0].d[i].len = sizeof netrx[i]; vqs[0].d[i].flags = F_WRITE;
		vq_publish(0, (u16)i);
	}
	u8 *f = nettx + 12;
	for (int i = 0; i < 6; i++) { f[i] = 0xff; f[6 + i] = mac[i]; }
	f[12] = 0x88; f[13] = 0xb5;
	const char *msg = "hello from guest net";
	for (int i = 0; msg[i]; i++) f[14 + i] = (u8)msg[i];
	vqs[1].d[0].addr = (u64)nettx; vqs[1].d[0].len = sizeof nettx; vqs[1].d[0].flags = 0;
	vq_publish(1, 0);
	vq_next_used(1);
	puts("sent\n");
	for (;;) {
		struct used_elem e = vq_next_used(0);
		u8 *in = netrx[e.id] + 12;
		int mine = e.len > 12 + 14 && in[12] == 0x88 && in[13] == 0xb5;
		if (mine) {
			in[e.len - 12 < 1500 ? e.len - 12 : 1500] = 0;
			puts("got: "); puts((const char *)(in + 14)); puts("\n");
			debug_exit(70);
		}
		vq_publish(0, (u16)e.id); /* someone else's frame (IPv6 chatter): reuse the buffer */
	}
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
	if (streq(t, "idle")) {
		/* Runs until killed: with the in-kernel irqchip a HLT with interrupts off
		 * sleeps in KVM without exiting (benches/vmm/density.sh samples the VMM then). */
		puts("idle\n");
		for (;;) __asm__ volatile("cli; hlt");
	}
	if (streq(t, "exits")) { test_exits(); return; }
	if (streq(t, "cpuid")) test_cpuid(id);
	if (streq(t, "bootparams")) test_bootparams(bp);
	if (streq(t, "blk")) test_blk(0);
	if (streq(t, "blk-ro")) test_blk(1);
	if (streq(t, "rng")) test_rng();
	if (streq(t, "vsock")) test_vsock();
	if (streq(t, "irq")) test_irq();
	if (streq(t, "net")) test_net();
	if (streq(t, "echo")) {
		/* Reads one line from COM1 (polling the data-ready bit) and echoes it. */
		char line[64];
		int n = 0;
		puts("ready\n");
		for (;;) {
			while (!(inb(0x3f8 + 5) & 1)) {}
			char c = (char)inb(0x3f8);
			if (c == '\n' || c == '\r' || n == 63) break;
			line[n++] = c;
		}
		line[n] = 0;
		puts("echo: "); puts(line); puts("\n");
		/* Exit only once the host has read the echo and says so: closing the pty at VM
		 * exit hangs it up, and a reader that is not done yet would lose the line. */
		while (!(inb(0x3f8 + 5) & 1)) {}
		debug_exit(80);
	}
	if (streq(t, "reset")) { outb(0x64, 0xfe); }
	if (streq(t, "poweroff")) { outb(0x600, (5 << 2) | (1 << 5)); }
	if (streq(t, "triple")) { __asm__ volatile("ud2"); }
	puts("unknown test\n");
	debug_exit(1);
}
