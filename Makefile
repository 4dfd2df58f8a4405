# s2s-proxy build. `make` builds build/s2s-proxy; see `make help`.
# Debian 12's packages, found with pkg-config. libmicrohttpd is not among them:
# the pinned release in third_party/ is built once into build/deps
# (scripts/libmicrohttpd.sh) and linked statically.
PKGS     := libcurl openssl libcjson inih gnutls libxml-2.0 libxcrypt
MHD_PREFIX := build/deps/libmicrohttpd
MHD_STAMP  := $(MHD_PREFIX)/.stamp
MHD_LIB    := $(MHD_PREFIX)/lib/libmicrohttpd.a
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.1.0)
CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wpointer-arith -Wvla -Wundef
# WERROR=  (empty) builds without -Werror, for packagers on newer compilers.
WERROR   ?= -Werror
WARN     := $(filter-out -Werror,$(WARN)) $(WERROR)
# -MMD -MP: each object depends on the headers it includes (build/**/*.d), nothing more.
BASE_CFLAGS = -std=c17 -D_GNU_SOURCE -DS2S_VERSION='"$(VERSION)"' $(WARN) -pthread -MMD -MP \
            -Isrc -I$(MHD_PREFIX)/include $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libxml2 is compiled against but not linked: xmlapi.c loads it on first use.
LIBS      = $(MHD_LIB) $(shell pkg-config --libs $(filter-out libxml-2.0,$(PKGS)) 2>/dev/null) -ldl -pthread

# Two flavours share the sources: release (build/) and ASan+UBSan (build/asan/).
OPT_release := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
OPT_asan    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

# One folder per subsystem (docs/internals.md); includes name the folder: "util/log.h".
SRC      := $(wildcard src/*.c src/*/*.c)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

.PHONY: image pkgcheck distclean all asan test test-unit test-faults test-integration demo deps deps-build clean format format-check fuzz fuzz-build help install bench bench-urlrw

all: build/s2s-proxy

help:
	@echo "make            build build/s2s-proxy"
	@echo "make test       install missing Debian packages, run every test (also under ASan+UBSan)"
	@echo "make demo       run the proxy against the local simulated Microsoft cloud"
	@echo "make deps       install the Debian packages (idempotent)"
	@echo "make asan       build build/asan/s2s-proxy with ASan+UBSan"
	@echo "make image      build the container image s2s-proxy:latest with podman (no Docker, no registry)"
	@echo "make fuzz       run every libFuzzer target for FUZZ_SECONDS (default 20)"
	@echo "make format     clang-format the sources; format-check fails on a diff"

deps:
	@./scripts/deps.sh --test

# A fresh machine gets one clear line instead of "curl/curl.h: No such file".
pkgcheck:
	@pkg-config --exists $(PKGS) 2>/dev/null || { \
	  echo "missing build packages ($$(for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || printf ' %s' $$p; done)): run 'make deps' (or 'make test', which installs them)" >&2; exit 1; }

# The pinned libmicrohttpd, built once (checksum verified) and cached in build/deps.
$(MHD_STAMP): third_party/libmicrohttpd/SHA256SUMS scripts/libmicrohttpd.sh | pkgcheck
	@scripts/libmicrohttpd.sh $(MHD_PREFIX)
$(MHD_LIB): $(MHD_STAMP)

# docker/Dockerfile with podman/buildah on Debian bases debootstrapped from this
# machine's apt sources (cached); installs the tools when missing. IMAGE_TAG=NAME to rename.
IMAGE_TAG ?= s2s-proxy:latest
image:
	@scripts/image.sh --tag $(IMAGE_TAG)

deps-build:
	@./scripts/deps.sh --build

# $(1) = flavour, $(2) = output dir
define flavour
$(2)/obj/%.o: src/%.c $(MHD_STAMP)
	@mkdir -p $$(@D)
	$$(CC) $$(BASE_CFLAGS) $$(OPT_$(1)) -c $$< -o $$@
$(2)/libs2s.a: $(patsubst src/%.c,$(2)/obj/%.o,$(LIB_SRC))
	ar rcs $$@ $$^
$(2)/s2s-proxy: $(2)/obj/main.o $(2)/libs2s.a
	$$(CC) $$(OPT_$(1)) $$^ $$(LIBS) -o $$@
$(2)/tests/%: tests/unit/%.c tests/unit/t.h $(2)/libs2s.a | $(2)/tests
	$$(CC) $$(BASE_CFLAGS) $$(OPT_$(1)) $$< $(2)/libs2s.a $$(LIBS) -o $$@
$(2)/obj $(2)/tests:
	mkdir -p $$@
endef
$(eval $(call flavour,release,build))
$(eval $(call flavour,asan,build/asan))

asan: build/asan/s2s-proxy

# The libraries' own cost per request, without s2s-proxy (bench/floor.c; make bench).
build/bench-floor: bench/floor.c $(MHD_STAMP) | build/obj
	$(CC) $(BASE_CFLAGS) $(OPT_release) $< $(LIBS) -o $@

# The URL rewriter's speed in MB/s (bench/urlrw_speed.c; not part of make test).
build/bench-urlrw-speed: bench/urlrw_speed.c build/libs2s.a
	$(CC) $(BASE_CFLAGS) $(OPT_release) $< build/libs2s.a $(LIBS) -o $@
bench-urlrw: build/bench-urlrw-speed
	@build/bench-urlrw-speed

UNIT_BINS      := $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
UNIT_BINS_ASAN := $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRC))

test: deps
	@$(MAKE) --no-print-directory -j2 build/s2s-proxy build/asan/s2s-proxy $(UNIT_BINS) $(UNIT_BINS_ASAN) $(FUZZ_BINS)
	@tests/run.sh

# The fault suite alone, with its table (also part of make test).
test-faults: deps build/s2s-proxy
	@TESTS=integration tests/run.sh test_faults

test-unit: deps build/s2s-proxy $(UNIT_BINS)
	@TESTS=unit tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory build/s2s-proxy
	@scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory build/s2s-proxy build/bench-floor
	@scripts/bench.sh

FORMAT_FILES = $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c bench/*.c)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@if command -v clang-format >/dev/null 2>&1; then \
		bad=$$(for f in $(FORMAT_FILES); do clang-format --output-replacements-xml $$f | grep -q '<replacement ' && echo $$f; done); \
		if [ -n "$$bad" ]; then echo "format-check: not clang-formatted (run make format): $$bad"; exit 1; fi; \
		echo "format-check: ok"; \
	else echo "format-check: clang-format not installed, skipped"; fi

FUZZ_SECONDS ?= 20
# libFuzzer: the library is built once with clang (coverage + ASan + UBSan), each
# target links it with the fuzzer driver.
FUZZ_CFLAGS = -std=c17 -D_GNU_SOURCE -DS2S_VERSION='"$(VERSION)"' -g -O1 -MMD -MP -fsanitize=fuzzer-no-link,address,undefined \
              -Isrc -I$(MHD_PREFIX)/include $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_BINS = $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
build/fuzz/obj/%.o: src/%.c $(MHD_STAMP)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -c $< -o $@
build/fuzz/libs2s.a: $(patsubst src/%.c,build/fuzz/obj/%.o,$(LIB_SRC))
	ar rcs $@ $^
build/fuzz/%: fuzz/%.c build/fuzz/libs2s.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< build/fuzz/libs2s.a $(LIBS) -o $@
fuzz-build: $(FUZZ_BINS)
# `make fuzz` runs every target for FUZZ_SECONDS on a scratch copy of its committed corpus.
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz_smoke.sh

# `make install PREFIX=/usr DESTDIR=/tmp/pkg`: binary, man page, systemd unit (its
# paths follow PREFIX), the example configurations. Never overwrites a live config.
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
install: build/s2s-proxy
	install -D -m 0755 build/s2s-proxy $(DESTDIR)$(PREFIX)/bin/s2s-proxy
	install -D -m 0644 docs/s2s-proxy.8 $(DESTDIR)$(PREFIX)/share/man/man8/s2s-proxy.8
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/doc/s2s-proxy/examples
	sed 's#/usr/local/bin/#$(PREFIX)/bin/#g; s#/etc/s2s-proxy/#$(SYSCONFDIR)/s2s-proxy/#g' config/s2s-proxy.service \
		> $(DESTDIR)$(UNITDIR)/s2s-proxy.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/s2s-proxy.service
	install -m 0644 config/examples/*.ini $(DESTDIR)$(PREFIX)/share/doc/s2s-proxy/examples/
	install -D -m 0644 config/s2s-proxy.ini $(DESTDIR)$(SYSCONFDIR)/s2s-proxy/s2s-proxy.ini.example

# build/deps (the built libmicrohttpd) survives `make clean`; `make distclean` removes it too.
clean:
	@if [ -d build ]; then find build -mindepth 1 -maxdepth 1 ! -name deps -exec rm -rf {} +; fi

distclean:
	rm -rf build

# The header dependencies the compiler wrote (-MMD -MP).
-include $(shell find build -name '*.d' -not -path 'build/deps/*' 2>/dev/null)
