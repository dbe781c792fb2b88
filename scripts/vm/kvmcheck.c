/* kvmcheck: prove that /dev/kvm in the test VM runs guest code, not just that it exists.
 *
 * Creates a VM with one page of memory at guest-physical 0x1000 holding the 16-bit code
 *     mov al, 42 ; out 0x10, al ; hlt
 * runs one vCPU in real mode from there and expects exactly an I/O exit on port 0x10 with
 * the byte 42, then a HLT exit. Exit status 0 on success, 1 with a message otherwise.
 * Built statically by selftest.sh with gcc -static.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_ADDR 0x1000
#define TEST_PORT 0x10
#define TEST_BYTE 42

static int fail(const char *what)
{
	fprintf(stderr, "kvmcheck: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(void)
{
	static const uint8_t code[] = { 0xb0, TEST_BYTE, 0xe6, TEST_PORT, 0xf4 };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		fprintf(stderr, "kvmcheck: KVM_GET_API_VERSION returned %d, want %d\n", api, KVM_API_VERSION);
		return 1;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	uint8_t *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory");
	memcpy(mem, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = GUEST_ADDR,
		.memory_size = 0x1000,
		.userspace_addr = (uint64_t)(uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");

	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return fail("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = GUEST_ADDR, .rflags = 0x2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS");

	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN (first)");
	if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->io.port != TEST_PORT || run->io.size != 1 ||
	    *((uint8_t *)run + run->io.data_offset) != TEST_BYTE) {
		fprintf(stderr, "kvmcheck: first exit: reason %u, want KVM_EXIT_IO out port 0x%x byte %d\n",
			run->exit_reason, TEST_PORT, TEST_BYTE);
		return 1;
	}
	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN (second)");
	if (run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kvmcheck: second exit: reason %u, want KVM_EXIT_HLT\n", run->exit_reason);
		return 1;
	}
	printf("kvmcheck: ok: guest wrote %d to port 0x%x and halted\n", TEST_BYTE, TEST_PORT);
	return 0;
}
