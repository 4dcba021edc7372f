// mqtt-load: a load generator for MQTT brokers (Gatehouse, Mosquitto), used by benchmarks/run.
//
// Publishers and subscribers are real MQTT 3.1.1 clients on one NIO event loop. Each payload carries the send
// time, so every received message gives a latency sample. Two modes:
//   throughput: publishers send as fast as TCP (and, at QoS 1, a window of unacknowledged PUBLISHes) allows;
//   paced (--rate N): N messages/s in total, for latency without queueing.
// Prints one JSON object with the figures.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MQTTCodec
import NIOCore
import NIOPosix

struct Options {
    var host = "127.0.0.1"
    var port = 1883
    var publishers = 1
    var subscribers = 1
    var qos: QoS = .atMostOnce
    var payloadSize = 64
    var seconds = 5.0
    var warmup = 1.0
    var rate: Int?
    var window = 64
    var label = ""
    /// Subscribers connect with clean session off (persistent sessions: what a broker must store).
    var persistentSubscribers = false

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var index = 1
        func value() -> String {
            index += 1
            guard index < arguments.count else {
                FileHandle.standardError.write(Data("missing value for \(arguments[index - 1])\n".utf8))
                exit(2)
            }
            return arguments[index]
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--host": options.host = value()
            case "--port": options.port = Int(value()) ?? 1883
            case "--publishers": options.publishers = Int(value()) ?? 1
            case "--subscribers": options.subscribers = Int(value()) ?? 1
            case "--qos": options.qos = QoS(rawValue: UInt8(value()) ?? 0) ?? .atMostOnce
            case "--payload": options.payloadSize = max(16, Int(value()) ?? 64)
            case "--seconds": options.seconds = Double(value()) ?? 5
            case "--warmup": options.warmup = Double(value()) ?? 1
            case "--rate": options.rate = Int(value())
            case "--window": options.window = Int(value()) ?? 64
            case "--label": options.label = value()
            case "--persistent-subscribers": options.persistentSubscribers = true
            default:
                FileHandle.standardError.write(Data("unknown option \(arguments[index])\n".utf8))
                exit(2)
            }
            index += 1
        }
        return options
    }
}

func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Shared counters. Confined to the client's single event loop (touched elsewhere only through `loop.submit`),
/// which is why it may be marked Sendable.
final class Results: @unchecked Sendable {
    var measuring = false
    var received = 0
    var sent = 0
    var latencies: [UInt64] = []
    var connected = 0
    var subscribed = 0
    /// Fractional messages owed by the pacer.
    var pacingCarry = 0.0

    var totalReceived = 0

    func record(sentAt: UInt64) {
        totalReceived += 1
        guard measuring else { return }
        received += 1
        if latencies.count < 2_000_000 {
            latencies.append(monotonicNanoseconds() &- sentAt)
        }
    }
}

/// One MQTT client connection. Confined to the client's single event loop (see `Results`).
final class ClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role { case publisher(index: Int), subscriber }

    let role: Role
    let options: Options
    let results: Results
    let clientID: String
    var decoder = MQTTDecoder(maximumPacketSize: 1 << 24, protocolVersion: .v3_1_1)
    var cumulation: ByteBuffer?
    var context: ChannelHandlerContext?
    var unacked = 0
    var nextPacketID: UInt16 = 0
    var running = false
    var payloadTemplate: ByteBuffer
    var credit = 0  // paced mode: messages this publisher may send now

    init(role: Role, options: Options, results: Results, clientID: String) {
        self.role = role
        self.options = options
        self.results = results
        self.clientID = clientID
        payloadTemplate = ByteBuffer(repeating: 0x61, count: options.payloadSize)
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        var clean = true
        if options.persistentSubscribers, case .subscriber = role { clean = false }
        send(.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: clientID, cleanStart: clean, keepAlive: 60)))
        context.flush()
    }

    func send(_ packet: MQTTPacket) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 64 + options.payloadSize)
        MQTTEncoder.encode(packet, version: .v3_1_1, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil { cumulation = incoming } else { cumulation?.writeBuffer(&incoming) }
        guard var buffer = cumulation else { return }
        cumulation = nil
        while true {
            let packet: MQTTPacket?
            do {
                packet = try decoder.decode(from: &buffer)
            } catch {
                FileHandle.standardError.write(Data("decode error: \(error)\n".utf8))
                context.close(promise: nil)
                return
            }
            guard let packet else { break }
            handle(packet, context: context)
        }
        if buffer.readableBytes > 0 {
            buffer.discardReadBytes()
            cumulation = buffer
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .publisher = role, running, options.rate == nil { pump() }
        context.flush()
    }

    func handle(_ packet: MQTTPacket, context: ChannelHandlerContext) {
        switch packet {
        case .connack:
            results.connected += 1
            if case .subscriber = role {
                send(.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "bench/#", qos: options.qos)])))
            }
        case .suback:
            results.subscribed += 1
        case .publish(let publish):
            var payload = publish.payload
            if let sentAt = payload.readInteger(as: UInt64.self) {
                results.record(sentAt: sentAt)
            }
            if publish.qos == .atLeastOnce, let id = publish.packetIdentifier {
                send(.puback(PubAckPacket(packetIdentifier: id)))
            }
        case .puback:
            unacked -= 1
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .publisher = role, running, options.rate == nil, context.channel.isWritable { pump() }
    }

    /// Throughput mode: fill the socket (and the QoS 1 window), then wait for writability or acks.
    func pump() {
        guard let context, case .publisher(let index) = role else { return }
        var count = 0
        while context.channel.isWritable && count < 1024 {
            if options.qos != .atMostOnce && unacked >= options.window { break }
            publishOne(index: index)
            count += 1
        }
        context.flush()
    }

    /// Paced mode: send what the credit allows.
    func pace() {
        guard let context, case .publisher(let index) = role else { return }
        while credit > 0 {
            if options.qos != .atMostOnce && unacked >= options.window { break }
            publishOne(index: index)
            credit -= 1
        }
        context.flush()
    }

    func publishOne(index: Int) {
        var payload = payloadTemplate
        payload.setInteger(monotonicNanoseconds(), at: payload.readerIndex)
        var packetID: UInt16?
        if options.qos != .atMostOnce {
            nextPacketID = nextPacketID == UInt16.max ? 1 : nextPacketID + 1
            packetID = nextPacketID
            unacked += 1
        }
        send(.publish(PublishPacket(topic: "bench/\(index)", payload: payload, qos: options.qos, packetIdentifier: packetID)))
        if results.measuring { results.sent += 1 }
    }
}

func connect(
    _ role: ClientHandler.Role, id: String, options: Options, results: Results, loop: any EventLoop
) throws -> (any Channel, ClientHandler) {
    let promise = loop.makePromise(of: ClientHandler.self)
    let channel = try ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 256 * 1024))
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = ClientHandler(role: role, options: options, results: results, clientID: id)
                try channel.pipeline.syncOperations.addHandler(handler)
                promise.succeed(handler)
            }
        }
        .connect(host: options.host, port: options.port).wait()
    return (channel, try promise.futureResult.wait())
}

func run(options: Options) throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let results = Results()
    var subscribers: [(any Channel, ClientHandler)] = []
    for index in 0..<options.subscribers {
        subscribers.append(
            try connect(.subscriber, id: "bench-sub-\(index)-\(getpid())", options: options, results: results, loop: loop))
    }
    var publishers: [(any Channel, ClientHandler)] = []
    for index in 0..<options.publishers {
        publishers.append(
            try connect(
                .publisher(index: index), id: "bench-pub-\(index)-\(getpid())", options: options, results: results,
                loop: loop))
    }
    // Wait for every CONNACK and SUBACK.
    let ready = monotonicNanoseconds() + 10_000_000_000
    while try loop.submit({ results.connected < options.publishers + options.subscribers || results.subscribed < options.subscribers }).wait() {
        if monotonicNanoseconds() > ready {
            FileHandle.standardError.write(Data("clients did not connect/subscribe in time\n".utf8))
            exit(1)
        }
        usleep(10_000)
    }

    let publisherHandlers = publishers.map(\.1)
    try loop.submit {
        for handler in publisherHandlers {
            handler.running = true
            if options.rate == nil { handler.pump() }
        }
    }.wait()
    var pacer: RepeatedTask?
    if options.rate == nil {
        // Throughput mode: top up every publisher each millisecond (re-enqueuing tasks back to back would starve
        // the loop's I/O, and with it the subscribers).
        pacer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
            for handler in publisherHandlers where handler.running { handler.pump() }
        }
    } else if let rate = options.rate {
        // Every millisecond, hand out the messages due, spread over the publishers.
        let perTick = Double(rate) / 1000.0 / Double(max(1, options.publishers))
        pacer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
            results.pacingCarry += perTick
            let whole = Int(results.pacingCarry)
            results.pacingCarry -= Double(whole)
            for handler in publisherHandlers {
                handler.credit += whole
                handler.pace()
            }
        }
    }
    usleep(useconds_t(options.warmup * 1_000_000))
    try loop.submit { results.measuring = true }.wait()
    let start = monotonicNanoseconds()
    usleep(useconds_t(options.seconds * 1_000_000))
    let (received, sent, latencies) = try loop.submit { () -> (Int, Int, [UInt64]) in
        results.measuring = false
        for handler in publisherHandlers { handler.running = false }
        return (results.received, results.sent, results.latencies)
    }.wait()
    let elapsed = Double(monotonicNanoseconds() - start) / 1e9
    pacer?.cancel()
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let index = min(sorted.count - 1, Int(Double(sorted.count) * p))
        return Double(sorted[index]) / 1000.0
    }
    let report: [String: Any] = [
        "label": options.label, "publishers": options.publishers, "subscribers": options.subscribers,
        "qos": Int(options.qos.rawValue), "payload": options.payloadSize, "seconds": elapsed,
        "sent_per_second": Double(sent) / elapsed, "received_per_second": Double(received) / elapsed,
        "p50_us": percentile(0.50), "p99_us": percentile(0.99), "samples": sorted.count,
        "rate": options.rate ?? 0, "total_received": try loop.submit { results.totalReceived }.wait(),
    ]
    let json = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
    for (channel, _) in subscribers + publishers { channel.close(promise: nil) }
    try? group.syncShutdownGracefully()
}

do {
    try run(options: Options.parse(CommandLine.arguments))
} catch {
    FileHandle.standardError.write(Data("mqtt-load: \(error)\n".utf8))
    exit(1)
}
