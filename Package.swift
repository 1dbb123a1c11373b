// swift-tools-version:5.7
// tmac for Swift (bindings/swift): `.package(url: "<this repository>", branch: "main")`, product
// "TMac". CTMac is the C API: bindings/swift/CTMac.xcframework when it has been built there
// (bindings/swift/build-xcframework.sh, on macOS for macOS and iOS), else the installed library
// found through pkg-config (`make install` writes tmac.pc), as on Linux.
import Foundation
import PackageDescription

let xcframework = "bindings/swift/CTMac.xcframework"
let haveXCFramework =
    FileManager.default.fileExists(atPath: Context.packageDirectory + "/" + xcframework)
let ctmac: Target = haveXCFramework
    ? .binaryTarget(name: "CTMac", path: xcframework)
    : .systemLibrary(name: "CTMac", path: "bindings/swift/Sources/CTMac", pkgConfig: "tmac")

let package = Package(
    name: "TMac",
    platforms: [.macOS(.v10_15), .iOS(.v13)],
    products: [.library(name: "TMac", targets: ["TMac"])],
    targets: [
        ctmac,
        .target(name: "TMac", dependencies: ["CTMac"], path: "bindings/swift/Sources/TMac"),
        .executableTarget(name: "generate", dependencies: ["TMac"],
                          path: "bindings/swift/Sources/generate"),
    ]
)
