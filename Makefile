# samepage - the README's two commands:
#   make run    the main job
#   make test   the whole suite (plain, then ASan+UBSan, then TSan on the
#               threaded tests and the multi-process ones it can run)
# Both install missing Debian build dependencies first (as root).
# Plain `make` only builds.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
MESON      ?= meson
NINJA      ?= ninja
# Warnings are errors in every build directory this Makefile makes.
SETUP       = $(MESON) setup --werror

.PHONY: all deps test test-plain test-asan test-tsan run bench clean

all: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

$(BUILD)/build.ninja:
	$(SETUP) $(BUILD)

$(BUILD_ASAN)/build.ninja:
	$(SETUP) $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false

$(BUILD_TSAN)/build.ninja:
	$(SETUP) $(BUILD_TSAN) -Db_sanitize=thread -Db_lundef=false

deps:
	@./scripts/deps.sh

test: deps
	$(MAKE) test-plain test-asan test-tsan

test-plain: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)
	$(MESON) test -C $(BUILD) --print-errorlogs

# The `run` suite (programs under `samepage run`) is included: with
# PR_SET_MEMORY_MERGE the sanitizer runtime's own memory gets registered
# too (docs/design.md, Limits, says what that risks).
test-asan: $(BUILD_ASAN)/build.ninja
	$(NINJA) -C $(BUILD_ASAN)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MESON) test -C $(BUILD_ASAN) --print-errorlogs --no-suite slow
	@# samepaged itself under ASan+UBSan, serving programs of the plain
	@# build (test-plain built them): garbage, control, reclaim, a kill,
	@# the directory growing.
	for sc in malformed control reclaim kill grow; do \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		./$(BUILD)/tests/test_cross ./$(BUILD)/samepage \
			./$(BUILD_ASAN)/samepaged $$sc || exit 1; \
	done

test-tsan: $(BUILD_TSAN)/build.ninja
	$(NINJA) -C $(BUILD_TSAN)
	TSAN_OPTIONS=halt_on_error=1 \
	$(MESON) test -C $(BUILD_TSAN) --print-errorlogs --suite threads \
		--suite run-tsan

# The main job: 4 processes holding 256 MiB each, half of it the same
# data in all four, merged under `samepage run` and then under kernel KSM
# (root; skipped where absent), both at full speed: live progress, Pss
# before and after, the side-by-side table and the plot of pages merged
# over time ($(BUILD)/run/merge_over_time.svg).  ~20 s.
run: deps all
	mkdir -p $(BUILD)/run
	./$(BUILD)/bench/ksm_compare --only a --procs 4 --mib 256 \
		--modes ksm-full,sp-full --live \
		--svg $(BUILD)/run/merge_over_time.svg

# ksm_compare: samepage side by side with kernel KSM (root for the KSM
# half; ~5 minutes); the plot goes to $(BUILD)/bench/merge_over_time.svg.
bench: deps all
	./$(BUILD)/bench/engine_bench
	./$(BUILD)/bench/linux_bench
	./$(BUILD)/bench/ksm_compare --svg $(BUILD)/bench/merge_over_time.svg

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN)
