#!/usr/bin/env bash
# Fuzz the input CSV reader and the row validator for a bounded time.
#
#   tests/fuzz/run.sh            # 60 seconds
#   tests/fuzz/run.sh 600        # 10 minutes
#   tests/fuzz/run.sh 60 -jobs=2 -workers=2   # extra arguments go to libFuzzer
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address,
# -Cpasses=sancov-module, ...), which stable rustc accepts with RUSTC_BOOTSTRAP=1. Set
# FUZZ_SANITIZER=none for a faster run without AddressSanitizer (the code is safe Rust; a panic
# is still caught). Exit status: 0 when nothing was found within the time, non-zero when
# libFuzzer stopped on a crash, a timeout or a leak (the reproducer is in
# tests/fuzz/artifacts/reader_validator/).
set -euo pipefail

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [LIBFUZZER-ARGS...]   (SECONDS must be a whole number, default 60)" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
target=reader_validator
corpus="tests/fuzz/corpus/$target"
mkdir -p "$corpus" "tests/fuzz/artifacts/$target" tests/fuzz/target/scratch
# The target writes each input to a file in a per-process directory under TMPDIR: keep those
# in the ignored target/ directory rather than /tmp.
export TMPDIR="$root/tests/fuzz/target/scratch"

echo "== cargo fuzz run --fuzz-dir tests/fuzz $target ($seconds s, sanitizer ${FUZZ_SANITIZER:-address})" >&2
exec cargo fuzz run --fuzz-dir tests/fuzz --sanitizer "${FUZZ_SANITIZER:-address}" "$target" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 "$@"
