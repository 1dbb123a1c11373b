#!/bin/sh
# Builds bindings/swift/CTMac.xcframework: the static libtmac.a with tmac.h and module.modulemap,
# for macOS (arm64 + x86_64), iOS devices and the iOS simulator (arm64 + x86_64). Run on macOS
# with Xcode and rustup. Each platform slice holds one library, so the fat ones are lipo'd first.
set -eu
cd "$(dirname "$0")/../.."
targets="aarch64-apple-darwin x86_64-apple-darwin aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios"
rustup target add $targets
for t in $targets; do cargo build --release --lib --target "$t"; done

out=build/xcframework
rm -rf "$out" bindings/swift/CTMac.xcframework
mkdir -p "$out/Headers" "$out/macos" "$out/ios-simulator"
cp include/tmac.h include/module.modulemap "$out/Headers/"
lipo -create target/aarch64-apple-darwin/release/libtmac.a \
  target/x86_64-apple-darwin/release/libtmac.a -output "$out/macos/libtmac.a"
lipo -create target/aarch64-apple-ios-sim/release/libtmac.a \
  target/x86_64-apple-ios/release/libtmac.a -output "$out/ios-simulator/libtmac.a"
xcodebuild -create-xcframework \
  -library "$out/macos/libtmac.a" -headers "$out/Headers" \
  -library target/aarch64-apple-ios/release/libtmac.a -headers "$out/Headers" \
  -library "$out/ios-simulator/libtmac.a" -headers "$out/Headers" \
  -output bindings/swift/CTMac.xcframework
echo "bindings/swift/CTMac.xcframework: ready; the root Package.swift now uses it (to publish it"
echo "as a remote binaryTarget, zip it and run 'swift package compute-checksum' on the zip)"
