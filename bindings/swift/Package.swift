// swift-tools-version:5.7
// tmac for Swift. CTMac is the C API: on Linux the installed library, found through pkg-config
// (`make install` writes tmac.pc); elsewhere CTMac.xcframework, made by build-xcframework.sh.
import PackageDescription

#if os(Linux)
let ctmac = Target.systemLibrary(name: "CTMac", pkgConfig: "tmac")
#else
let ctmac = Target.binaryTarget(name: "CTMac", path: "CTMac.xcframework")
#endif

let package = Package(
    name: "TMac",
    products: [.library(name: "TMac", targets: ["TMac"])],
    targets: [
        ctmac,
        .target(name: "TMac", dependencies: ["CTMac"]),
        .executableTarget(name: "generate", dependencies: ["TMac"]),
    ]
)
