#!/usr/bin/env bash
# Fetch and build the reference llama.cpp (the oracle for fixtures and the benchmark baseline).
# llama.cpp comes from the PyPI source distribution of llama-cpp-python, which vendors a pinned
# llama.cpp commit; PyPI is reachable where GitHub may not be. Idempotent: reuses the cache.
# Usage: tools/llama_cpp.sh [CACHE_DIR]   (default: build/llama.cpp)
set -euo pipefail
VERSION=0.3.36            # vendors llama.cpp commit 0c1e570
COMMIT=0c1e570
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-$root/build/llama.cpp}
mkdir -p "$cache"
cd "$cache"
src=llama_cpp_python-$VERSION
if [ ! -d "$src" ]; then
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -d .
  tar xzf "$src.tar.gz"
fi
bin=$cache/build/bin
need="llama-quantize llama-bench llama-perplexity llama-tokenize llama-completion"
# Native, but without AMX: at this commit ggml's AMX matmul runs tile instructions on worker
# threads that never asked the kernel for AMX state (llama.cpp PR #26954), and dies with
# SIGILL on Sapphire Rapids. The flags are part of the build's stamp, so an older build is redone.
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
stamp="$COMMIT native $flags"
missing=0
for t in $need; do [ -x "$bin/$t" ] || missing=1; done
[ -f "$bin/libllama.so" ] || missing=1
[ "$(cat "$cache/BUILD" 2>/dev/null)" = "$stamp" ] || missing=1
if [ $missing = 1 ]; then
  command -v cmake >/dev/null || { apt-get install -y cmake >/dev/null || true; }
  rm -rf build
  cmake -S "$src/vendor/llama.cpp" -B build -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
    -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$bin" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$bin" >cmake.log 2>&1 || { tail -30 cmake.log; exit 1; }
  cmake --build build -j"$(nproc)" --target $need llama >build.log 2>&1 || { tail -30 build.log; exit 1; }
fi
echo "$COMMIT" > "$cache/COMMIT"
echo "$stamp" > "$cache/BUILD"
echo "$bin"
