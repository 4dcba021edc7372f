// libFuzzer harness for MQTTDecoder (see shared notes, section 10: SwiftPM runs this file's top-level code, so it
// hands control to libFuzzer through LLVMFuzzerRunDriver).
//
// Built with `-Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld` it is a libFuzzer
// binary. Built without that flag (a plain `swift build`) it links without libFuzzer and replays the files or
// directories named on its command line through the same checks, to reproduce a crash or re-run a corpus.
//
// Each input is decoded four ways: by a fresh server-side decoder (version unknown, so CONNECT first), by decoders
// preset to 5 and to 3.1.1, and as the stream following a valid MQTT 5 CONNECT. Each way runs once with the whole
// input and once fed in small chunks; both must agree. Every decoded packet must survive encode → decode unchanged,
// and `encodedSize` must match the bytes written.

import FuzzSupport
import MQTTCodec
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

private let maximumPacketSize = 1 << 20

private let connectPrefix: [UInt8] = {
    var buffer = ByteBufferAllocator().buffer(capacity: 64)
    MQTTEncoder.encode(
        .connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "fuzz")),
        version: .v5,
        into: &buffer
    )
    return Array(buffer.readableBytesView)
}()

private struct Outcome: Equatable {
    var packets: [MQTTPacket] = []
    var errorCode: ReasonCode?
}

/// Decodes `bytes` fed `chunkSize` bytes at a time (0: all at once) until the decoder needs more or fails.
private func decodeAll(_ bytes: ArraySlice<UInt8>, protocolVersion: MQTTProtocolVersion?, chunkSize: Int) -> Outcome {
    var decoder = MQTTDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: protocolVersion)
    var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
    var outcome = Outcome()
    var offset = bytes.startIndex
    repeat {
        let end = chunkSize == 0 ? bytes.endIndex : min(bytes.endIndex, offset + chunkSize)
        buffer.writeBytes(bytes[offset..<end])
        offset = end
        do {
            while let packet = try decoder.decode(from: &buffer) {
                checkRoundTrip(packet, version: decoder.protocolVersion)
                outcome.packets.append(packet)
            }
        } catch {
            outcome.errorCode = error.reasonCode
            return outcome
        }
    } while offset < bytes.endIndex
    return outcome
}

private func checkRoundTrip(_ packet: MQTTPacket, version: MQTTProtocolVersion?) {
    let encodingVersion: MQTTProtocolVersion
    if case .connect(let connect) = packet {
        encodingVersion = connect.protocolVersion
    } else if let version {
        encodingVersion = version
    } else {
        fatalError("decoded \(packet.packetType) without a protocol version")
    }
    var encoded = ByteBufferAllocator().buffer(capacity: 64)
    MQTTEncoder.encode(packet, version: encodingVersion, into: &encoded)
    let size = MQTTEncoder.encodedSize(packet, version: encodingVersion)
    guard size == encoded.readableBytes else {
        fatalError("encodedSize \(size) but \(encoded.readableBytes) bytes written for \(packet)")
    }
    var decoder = MQTTDecoder(protocolVersion: encodingVersion)
    do {
        guard let again = try decoder.decode(from: &encoded), encoded.readableBytes == 0 else {
            fatalError("re-encoded \(packet.packetType) did not decode as one whole packet")
        }
        guard again == packet else {
            fatalError("round trip changed the packet:\n\(packet)\n\(again)")
        }
    } catch {
        fatalError("re-encoded \(packet) failed to decode: \(error)")
    }
}

private func fuzzOne(_ bytes: ArraySlice<UInt8>, protocolVersion: MQTTProtocolVersion?) {
    let whole = decodeAll(bytes, protocolVersion: protocolVersion, chunkSize: 0)
    let chunked = decodeAll(bytes, protocolVersion: protocolVersion, chunkSize: 3)
    guard whole == chunked else {
        fatalError("chunked decoding differs: \(whole) vs \(chunked)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func mqttDecoderFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    fuzzOne(input[...], protocolVersion: nil)
    fuzzOne(input[...], protocolVersion: .v5)
    fuzzOne(input[...], protocolVersion: .v3_1_1)
    fuzzOne((connectPrefix + input)[...], protocolVersion: nil)
    return 0
}

FuzzDriver.main(mqttDecoderFuzzerTestOneInput)
