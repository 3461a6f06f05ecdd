# Front door. `make demo` and `make test` are the README's two commands.
BUILD     ?= build
SANBUILD  ?= build-san
MESON_OPTS ?=

.PHONY: all deps build san demo test soak bench kvm-vm install clean
all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@meson setup --werror $(MESON_OPTS) $(BUILD) >/dev/null

$(SANBUILD)/build.ninja:
	@CC=clang meson setup --werror -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dfuzz=true -Dguest=false $(SANBUILD) >/dev/null

build: deps $(BUILD)/build.ninja
	@ninja --quiet -C $(BUILD)

san: deps $(SANBUILD)/build.ninja
	@ninja --quiet -C $(SANBUILD)

demo: build
	@scripts/demo.sh $(BUILD)

test: build san
	@scripts/run-tests.sh $(BUILD) $(SANBUILD)

soak: build san
	@XKVM_SOAK=1 scripts/run-tests.sh $(BUILD) $(SANBUILD)

bench: build
	@scripts/deps.sh --bench
	@scripts/bench.sh $(BUILD)

# Install into PREFIX (the build's, /usr/local unless set) under DESTDIR (meson install).
PREFIX ?=
DESTDIR ?=
install: build
	@if [ -n "$(PREFIX)" ]; then meson configure -Dprefix=$(PREFIX) $(BUILD) >/dev/null && ninja --quiet -C $(BUILD); fi
	@meson install --quiet -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir "$(DESTDIR)")

# KVM suites inside a nested VM, for machines without /dev/kvm (docs/testing.md).
kvm-vm: build
	@scripts/kvm-vm.sh $(BUILD) $(SUITES)

clean:
	rm -rf $(BUILD) $(SANBUILD)
