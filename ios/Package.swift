// swift-tools-version:5.9
//
// The Tether Swift package: the UniFFI-generated Swift API (module `Tether`) over the Rust
// core, which ships as the static library inside TetherFFI.xcframework (C module `TetherFFI`).
//
// Run ./build-xcframework.sh first (on a Mac with Xcode): it builds the xcframework and
// copies the generated Tether.swift into Sources/Tether/. Both are gitignored.
//
// NOT COMPILED HERE: there was no Swift toolchain on the machine this was written on.
import PackageDescription

let package = Package(
    name: "Tether",
    platforms: [
        .iOS(.v15),
        // The macOS slice lets `swift test` run the scenario on the Mac itself.
        .macOS(.v12),
    ],
    products: [
        .library(name: "Tether", targets: ["Tether"]),
    ],
    targets: [
        .binaryTarget(
            name: "TetherFFI",
            path: "TetherFFI.xcframework"
        ),
        .target(
            name: "Tether",
            dependencies: ["TetherFFI"],
            path: "Sources/Tether"
        ),
        .testTarget(
            name: "TetherTests",
            dependencies: ["Tether"],
            path: "Tests/TetherTests"
        ),
    ]
)
