#!/usr/bin/env bash
# What `make test` needs beyond Rust, installed once (idempotent; a second run installs nothing):
# rustfmt and clippy (rustup components), Debian packages (valgrind, pkg-config, binutils, g++,
# a JDK, Kotlin, JNA), NumPy and pexpect (Python), and cbindgen at the version the
# committed include/tmac.h was made with. The aarch64 toolchain comes from tools/arm_deps.sh,
# which `make test-aarch64` runs itself. Needs root (or sudo) only when a Debian package is
# missing; a failing `apt-get update` (an index mid-sync) is tolerated, and what is needed is
# checked afterwards.
set -euo pipefail
CBINDGEN_VERSION=0.29.2

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
fi

need_apt=()
for tool in valgrind:valgrind pkg-config:pkg-config readelf:binutils c++:g++ \
            javac:default-jdk-headless jar:default-jdk-headless kotlinc:kotlin; do
  command -v "${tool%%:*}" >/dev/null || need_apt+=("${tool##*:}")
done
[ -f /usr/share/java/jna.jar ] || need_apt+=(libjna-java)  # JNA for the Kotlin/JVM binding
# Maven builds the Kotlin binding offline from Debian's repository (tools/maven-offline.xml)
command -v mvn >/dev/null || need_apt+=(maven)
M2=/usr/share/maven-repo
for art in org/apache/maven/plugins/maven-compiler-plugin/3.10.1:libmaven-compiler-plugin-java \
           org/apache/maven/plugins/maven-resources-plugin/3.3.0:libmaven-resources-plugin-java \
           org/apache/maven/plugins/maven-jar-plugin/3.3.0:libmaven-jar-plugin-java \
           org/apache/maven/plugins/maven-surefire-plugin/2.22.3:libsurefire-java \
           org/jetbrains/kotlinx/kotlinx-coroutines-core:libkotlinx-coroutines-java; do
  [ -d "$M2/${art%%:*}" ] || need_apt+=("${art##*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq || echo "apt-get update failed; installing from the current index" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}"
fi
for tool in valgrind pkg-config readelf c++ java javac jar kotlinc mvn /usr/share/java/jna.jar \
            $M2/org/jetbrains/kotlin/kotlin-maven-plugin; do
  command -v "$tool" >/dev/null || [ -e "$tool" ] || { echo "missing after install: $tool" >&2; exit 1; }
done

# NumPy (tools/legacy_reference.py) and pexpect (tests/cli_chat.py drives the chat in a pty)
for mod in numpy pexpect; do
  if ! python3 -c "import $mod" 2>/dev/null; then
    python3 -m pip install --quiet "$mod" || python3 -m pip install --quiet --break-system-packages "$mod"
  fi
done

if ! cbindgen --version 2>/dev/null | grep -q "$CBINDGEN_VERSION"; then
  cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION"
fi
