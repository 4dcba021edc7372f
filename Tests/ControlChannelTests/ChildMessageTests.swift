import ControlChannel
import Foundation
import Testing

@Suite struct ChildMessageTests {
    static let samples: [ChildMessage] = [
        .quit(deadlineSeconds: 15), .quit(deadlineSeconds: 0), .reload(configurationSnapshot: "/run/gatehouse.conf.active"),
        .ready, .refresh, .statistics(json: "{\"connections\":3}"),
        .fatal(reason: "cannot listen on 127.0.0.1:1883: address already in use"),
    ]

    @Test(arguments: samples)
    func roundTrips(_ message: ChildMessage) throws {
        var decoder = ChildMessageDecoder()
        decoder.append(message.encoded())
        #expect(try decoder.next() == message)
        #expect(try decoder.next() == nil)
    }

    @Test func readyIsFiveBytes() {
        #expect(ChildMessage.ready.encoded() == [0, 0, 0, 1, 3])
        #expect(ChildMessage.refresh.encoded() == [0, 0, 0, 1, 5])
    }

    @Test func decodesMessagesSplitAtEveryByte() throws {
        let stream = Self.samples.flatMap { $0.encoded() }
        for split in 0...stream.count {
            var decoder = ChildMessageDecoder()
            var decoded: [ChildMessage] = []
            decoder.append(stream[..<split])
            while let message = try decoder.next() { decoded.append(message) }
            decoder.append(stream[split...])
            while let message = try decoder.next() { decoded.append(message) }
            #expect(decoded == Self.samples, "split at \(split)")
        }
    }

    @Test func decodesOneByteAtATime() throws {
        var decoder = ChildMessageDecoder()
        var decoded: [ChildMessage] = []
        for byte in Self.samples.flatMap({ $0.encoded() }) {
            decoder.append([byte])
            while let message = try decoder.next() { decoded.append(message) }
        }
        #expect(decoded == Self.samples)
    }

    @Test func rejectsOversizedFrames() {
        var decoder = ChildMessageDecoder()
        decoder.append([0x7f, 0xff, 0xff, 0xff, 1])
        #expect(throws: ChildMessageDecodingError.frameTooLarge(0x7fff_ffff)) { try decoder.next() }
    }

    @Test func rejectsEmptyFrames() {
        var decoder = ChildMessageDecoder()
        decoder.append([0, 0, 0, 0])
        #expect(throws: ChildMessageDecodingError.emptyFrame) { try decoder.next() }
    }

    @Test func rejectsUnknownKinds() {
        var decoder = ChildMessageDecoder()
        decoder.append([0, 0, 0, 1, 99])
        #expect(throws: ChildMessageDecodingError.unknownKind(99)) { try decoder.next() }
    }

    @Test func rejectsBadPayloads() {
        var quit = ChildMessageDecoder()
        quit.append([0, 0, 0, 3, 1] + Array("-1".utf8))
        #expect(throws: ChildMessageDecodingError.invalidPayload(kind: 1)) { try quit.next() }

        var ready = ChildMessageDecoder()
        ready.append([0, 0, 0, 2, 3, 0])
        #expect(throws: ChildMessageDecodingError.invalidPayload(kind: 3)) { try ready.next() }

        var reload = ChildMessageDecoder()
        reload.append([0, 0, 0, 1, 2])
        #expect(throws: ChildMessageDecodingError.invalidPayload(kind: 2)) { try reload.next() }
    }
}

@Suite struct ControlProtocolTests {
    @Test func requestUsesKebabCaseCommands() throws {
        let line = try ControlRequest(command: .restartFetcher).encodedLine()
        #expect(String(decoding: line, as: UTF8.self) == "{\"command\":\"restart-fetcher\"}\n")
        let decoded = try JSONDecoder().decode(ControlRequest.self, from: Data(line.dropLast()))
        #expect(decoded.command == .restartFetcher)
    }

    @Test func statusJSONHasTheDocumentedShape() throws {
        let report = StatusReport(
            supervisorPid: 10, config: "/etc/gatehouse.conf", workerProcesses: 1,
            processes: [
                .init(role: "supervisor", slot: 0, pid: 10, state: "running", uptimeSeconds: 1.5, restarts: 0, lastExit: nil),
                .init(role: "worker", slot: 0, pid: 12, state: "ready", uptimeSeconds: 1, restarts: 2, lastExit: "exited with status 1"),
            ])
        let line = try ControlResponse(ok: true, status: report).encodedLine()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        let status = try #require(object["status"] as? [String: Any])
        #expect(status["supervisor_pid"] as? Int == 10)
        #expect(status["config"] as? String == "/etc/gatehouse.conf")
        let processes = try #require(status["processes"] as? [[String: Any]])
        #expect(processes.count == 2)
        #expect(processes[0]["role"] as? String == "supervisor")
        #expect(processes[0]["last_exit"] is NSNull)
        #expect(processes[1]["slot"] as? Int == 0)
        #expect(processes[1]["restarts"] as? Int == 2)
        #expect(processes[1]["uptime_seconds"] as? Double == 1)
        let decoded = try JSONDecoder().decode(ControlResponse.self, from: Data(line.dropLast()))
        #expect(decoded.status == report)
    }
}
