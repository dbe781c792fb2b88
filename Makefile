# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
BERTH := target/release/berth
DEMO := build/demo

.PHONY: demo test setup build unit vm-tests bench lint

setup:
	sh scripts/setup.sh

build: setup
	cargo build --release -p berth

# Run a container from a busybox bundle built locally (no network needed).
demo: build
	sh scripts/busybox-rootfs.sh $(DEMO)/rootfs
	rm -f $(DEMO)/config.json
	$(BERTH) spec --bundle $(DEMO)
	jq '.process.terminal = false | .process.args = ["sh", "-c", "echo \"hello from $$(hostname), pid $$$$ in its own namespaces\"; id; cat /proc/self/cgroup | head -3"]' \
		$(DEMO)/config.json > $(DEMO)/config.json.tmp && mv $(DEMO)/config.json.tmp $(DEMO)/config.json
	$(BERTH) run --bundle $(DEMO) berth-demo-$$$$

# The whole test suite: unit and end-to-end tests on the host, then the VM stages.
test: setup lint
	cargo test --workspace -- --test-threads=2
	$(MAKE) vm-tests

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

vm-tests:
	@for t in scripts/vm/stage-*.sh; do [ -e "$$t" ] || continue; echo "== $$t"; sh "$$t" || exit 1; done
