// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Gatehouse",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gatehouse", targets: ["GatehouseMain"]),
        .executable(name: "mqtt-load", targets: ["MQTTLoad"]),
        .executable(name: "tls-handshake-load", targets: ["TLSHandshakeLoad"]),
    ],
    dependencies: [
        // Pinned exactly: `from:` resolves to 2.101.3 on the mirror (see shared notes).
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        // MARK: C libraries and shims
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "COpenSSLShims", dependencies: ["COpenSSL"]),
        .target(name: "CCurlShims", dependencies: ["CCurl"]),
        .target(name: "CSystemShims"),

        // MARK: Concern libraries
        .target(name: "BrokerConfiguration"),
        .target(name: "ControlChannel"),
        .target(name: "ProcessSupport", dependencies: ["CSystemShims"]),
        .target(name: "GatehouseLogging", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(name: "DevelopmentPKI", dependencies: ["COpenSSL", "COpenSSLShims", "OpenSSLTLS", "ProcessSupport"]),
        .target(name: "MQTTCodec", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "BrokerCore", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "AccessControl", dependencies: ["COpenSSL"]),
        .target(
            name: "MQTTBroker",
            dependencies: [
                "BrokerCore", "MQTTCodec", "AccessControl", "BrokerConfiguration", "ProcessSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "OpenSSLTLS",
            dependencies: [
                "COpenSSL", "COpenSSLShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "CurlClient", dependencies: ["CCurl", "CCurlShims"]),
        .target(name: "RevocationCache", dependencies: ["COpenSSL", "ProcessSupport"]),
        .target(
            name: "BrokerStore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                // Payloads stay in the ByteBuffers the broker shares: a snapshot of a session copies none of them.
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),

        // MARK: Role libraries
        .target(
            name: "Supervisor",
            dependencies: [
                "BrokerConfiguration", "ControlChannel", "ProcessSupport", "RevocationCache", "MQTTBroker", "OpenSSLTLS",
                "BrokerStore", .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                // The metrics endpoint runs on an event loop of its own (NIOHTTP1), never in the poll loop.
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "WorkerCluster",
            dependencies: [
                "MQTTBroker", "MQTTCodec", "ProcessSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Worker",
            dependencies: [
                "WorkerCluster", "BrokerStore",
                "BrokerConfiguration", "ControlChannel", "ProcessSupport", "RevocationCache", "MQTTBroker", "MQTTCodec",
                "OpenSSLTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Fetcher",
            dependencies: [
                "BrokerConfiguration", "ControlChannel", "ProcessSupport", "RevocationCache", "CurlClient", "OpenSSLTLS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: The one executable
        .executableTarget(
            name: "GatehouseMain",
            dependencies: [
                "BrokerConfiguration", "ControlChannel", "ProcessSupport", "GatehouseLogging", "DevelopmentPKI",
                "OpenSSLTLS", "CurlClient", "Supervisor", "Worker", "Fetcher", "AccessControl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Benchmarks (benchmarks/run)
        .executableTarget(
            name: "MQTTLoad",
            dependencies: [
                "MQTTCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "benchmarks/MQTTLoad"
        ),

        .executableTarget(
            name: "SubscriptionTreeBenchmark",
            dependencies: ["BrokerCore"],
            path: "benchmarks/SubscriptionTreeBenchmark"
        ),
        .executableTarget(
            name: "TLSHandshakeLoad",
            dependencies: ["COpenSSL", "COpenSSLShims"],
            path: "benchmarks/TLSHandshakeLoad"
        ),

        // Fuzzing: bin/fuzz builds these with -DFUZZING and -sanitize=fuzzer,address; a plain build replays inputs.
        .target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"),
        .executableTarget(
            name: "MQTTDecoderFuzzer",
            dependencies: ["FuzzSupport", "MQTTCodec", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/MQTTDecoderFuzzer"
        ),
        .executableTarget(
            name: "RevocationFuzzer",
            dependencies: ["FuzzSupport", "Fetcher", "OpenSSLTLS"],
            path: "Fuzz/RevocationFuzzer"
        ),

        // MARK: Tests
        .testTarget(name: "BrokerConfigurationTests", dependencies: ["BrokerConfiguration"]),
        .testTarget(name: "ControlChannelTests", dependencies: ["ControlChannel"]),
        .testTarget(name: "SupervisorTests", dependencies: ["Supervisor", "ControlChannel", "ProcessSupport"]),
        .testTarget(name: "DevelopmentPKITests", dependencies: ["DevelopmentPKI", "OpenSSLTLS"]),
        .testTarget(name: "MQTTCodecTests", dependencies: ["MQTTCodec", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "BrokerCoreTests", dependencies: ["BrokerCore"]),
        .testTarget(name: "AccessControlTests", dependencies: ["AccessControl"]),
        .testTarget(name: "CurlClientTests", dependencies: ["CurlClient"]),
        .testTarget(
            name: "MQTTBrokerTests",
            dependencies: ["MQTTBroker", "MQTTCodec", "ProcessSupport", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "ProcessSupportTests", dependencies: ["ProcessSupport"]),
        .testTarget(name: "RevocationCacheTests", dependencies: ["RevocationCache", "ProcessSupport"]),
        .testTarget(
            name: "WorkerTests",
            dependencies: [
                "Worker", "MQTTBroker", "WorkerCluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BrokerStoreTests",
            dependencies: [
                "BrokerStore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "FetcherTests",
            dependencies: [
                "Fetcher", "OpenSSLTLS", "RevocationCache", "CurlClient", "ProcessSupport",
                // The revocation fuzz tests follow bad input from the fetcher's checks into the worker's loading.
                "Worker", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "OpenSSLTLSTests",
            dependencies: [
                "OpenSSLTLS", "DevelopmentPKI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
