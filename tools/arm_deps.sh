#!/usr/bin/env bash
# Install, from Debian, what building tmac for ARM Linux and running it under qemu-user needs:
# Debian's Rust (rustc-web + cargo-web + rust-web-clippy, 1.96 in bookworm) with the standard
# library for the target architecture (libstd-rust-web-dev:ARCH, a multiarch package, which also
# brings the target's C library, libc6:ARCH, that qemu runs the programs with), the GNU cross C
# compiler (the linker, and the compiler for the C examples) and qemu-user. The rustup toolchain
# is not touched: Debian's tools live in /usr/bin and are called by full path (see the Makefile).
# Idempotent: does nothing when everything is installed. Needs root (or sudo) otherwise.
# Usage: tools/arm_deps.sh [arm64|armhf]   (default arm64)
set -euo pipefail
arch=${1:-arm64}
case $arch in
  arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu qemu=qemu-aarch64
         ld_so=ld-linux-aarch64.so.1 ;;
  armhf) triple=armv7-unknown-linux-gnueabihf gnu=arm-linux-gnueabihf qemu=qemu-arm
         ld_so=ld-linux-armhf.so.3 ;;
  *) echo "usage: $0 [arm64|armhf]" >&2; exit 2 ;;
esac
# libc6-dev-ARCH-cross: crt files and libraries in /usr/GNU-TRIPLE for the cross linker.
pkgs=(rustc-web cargo-web rust-web-clippy "libstd-rust-web-dev:$arch" "gcc-$gnu"
      "libc6-dev-$arch-cross" qemu-user)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    "${sudo[@]}" dpkg --add-architecture "$arch"
  fi
  # A failing update (one index mid-sync, a third-party repository without this architecture)
  # is not fatal by itself: install from what the index has, then check the result below.
  "${sudo[@]}" apt-get update -qq ||
    echo "arm_deps: apt-get update failed; installing from the current index" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Check that what the build and the tests call is there and fits together.
fail() { echo "arm_deps: $*" >&2; exit 1; }
for t in rustc rustdoc cargo cargo-clippy; do
  [ -x "/usr/bin/$t" ] || fail "Debian's $t is not in /usr/bin"
done
sysroot=$(/usr/bin/rustc --print sysroot)
ls "$sysroot/lib/rustlib/$triple/lib/"libstd-*.rlib >/dev/null 2>&1 ||
  fail "no standard library for $triple under $sysroot (libstd-rust-web-dev:$arch)"
command -v "$gnu-gcc" >/dev/null || fail "$gnu-gcc is missing"
command -v "$qemu" >/dev/null || fail "$qemu is missing"
[ -e "/usr/$gnu/lib/Scrt1.o" ] || fail "/usr/$gnu/lib/Scrt1.o is missing (libc6-dev-$arch-cross)"
[ -e "/lib/$ld_so" ] || fail "/lib/$ld_so is missing (libc6:$arch, which qemu runs programs with)"
