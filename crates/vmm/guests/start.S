/* Entry in 64-bit mode as the VMM leaves it: rsi = zero page. Each vCPU takes its
   own stack, indexed by the APIC id CPUID leaf 1 reports (which the VMM sets). */
	.section .text.start, "ax"
	.globl _start
_start:
	mov %rsi, %r12
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov %ebx, %r13d
	lea stacks(%rip), %rsp
	mov %rbx, %rax
	inc %rax
	shl $12, %rax
	add %rax, %rsp
	mov %r12, %rdi
	mov %r13d, %esi
	call guest_main
1:	hlt
	jmp 1b

/* Interrupt handler for the irq test: count, EOI to the LAPIC, return. */
	.globl irq_entry
irq_entry:
	push %rax
	incl irq_count(%rip)
	mov $0xfee000b0, %eax
	movl $0, (%rax)
	pop %rax
	iretq

	.bss
	.globl irq_count
irq_count:
	.long 0
	.align 4096
stacks:
	.space 4096 * 8

	.section .note.GNU-stack,"",@progbits
