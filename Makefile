# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
# The binary users run: statically linked (half the CPU per container of a dynamically
# linked PIE: no loader, no symbol relocation at each of its two execs per container).
BERTH := build/bin/berth
DEMO := build/demo

.PHONY: demo test setup build unit vm-tests bench lint

setup:
	sh scripts/setup.sh

build: setup
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p berth --target x86_64-unknown-linux-gnu
	install -D target/x86_64-unknown-linux-gnu/release/berth $(BERTH)
	install -D target/x86_64-unknown-linux-gnu/release/berth-vmm $(dir $(BERTH))berth-vmm

# Run a container the docker way from a busybox image built locally from Debian's
# busybox-static (no registry, no network: --network none leaves the host's interfaces
# alone), with a memory limit in its own cgroup.
demo: build
	sh scripts/build-test-image.sh $(DEMO)/image
	BERTH_DATA_ROOT=$(DEMO)/data $(BERTH) import $(DEMO)/image busybox:demo
	BERTH_DATA_ROOT=$(DEMO)/data $(BERTH) run --rm --network none --memory 64m busybox:demo \
		sh -c 'echo "hello from $$(hostname), pid $$$$ in its own namespaces"; id; grep memory /proc/self/cgroup'

# The whole test suite: unit and end-to-end tests on the host, then the VM stages.
test: setup lint
	cargo test --workspace -- --test-threads=2
	bash tests/clients/run.sh
	$(MAKE) vm-tests

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Stages that need a real Linux VM (qemu TCG, Debian's kernel): pure cgroup v2 for the
# cgroups crate and for containers, systemd as PID 1 for the systemd cgroup driver,
# AppArmor enforcing profiles, and
# berth's own VMM booting Linux under nested KVM.
VM_STAGES := scripts/vm/cgroups-v2.sh scripts/vm/runtime-v2.sh scripts/vm/systemd-v2.sh scripts/vm/apparmor.sh scripts/vm/vmm-nested.sh

vm-tests:
	@for t in $(VM_STAGES); do echo "== $$t"; bash "$$t" || exit 1; done
