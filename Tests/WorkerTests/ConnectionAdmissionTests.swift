import BrokerConfiguration
import Foundation
import NIOCore
import Testing

@testable import Worker

/// `ConnectionAdmission` with `max_connections_per_address`: counted per address next to `max_connections`, and
/// a place taken for one limit is given back when the other refuses.
@Suite struct ConnectionAdmissionTests {
    private func admission(_ lines: [String]) throws -> (ConnectionAdmission, String) {
        let directory = NSTemporaryDirectory() + "gatehouse-admission-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let text = (["listener.tcp.t = 1883"] + lines).joined(separator: "\n")
        let configuration = try ConfigurationLoader.parse(
            text, displayPath: "test.conf", baseDirectory: "/tmp", options: .init(checkFiles: false))
        let listener = try #require(configuration.listeners.first)
        return (try ConnectionAdmission(listener: listener, runDirectory: directory), directory)
    }

    private func address(_ ip: String) throws -> SocketAddress {
        try SocketAddress(ipAddress: ip, port: 40000)
    }

    @Test func perAddressLimitNextToTheListenerLimit() throws {
        let (admission, directory) = try admission([
            "listener.tcp.t.max_connections_per_address = 2", "listener.tcp.t.max_connections = 3",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard case .admitted(let first) = admission.admit(try address("127.0.0.1")),
            case .admitted(let second) = admission.admit(try address("127.0.0.1"))
        else {
            Issue.record("two connections from one address were refused")
            return
        }
        #expect(first.holdsPlace && first.connection && first.addressBucket != nil)
        #expect(admission.admit(try address("127.0.0.1")) == .refused(.maxConnectionsPerAddress))
        guard case .admitted(let third) = admission.admit(try address("::ffff:10.0.0.1")) else {
            Issue.record("another address was refused")
            return
        }
        // The listener is full: refused for max_connections, and its address place is given back.
        #expect(admission.admit(try address("10.0.0.1")) == .refused(.maxConnections))
        admission.release(third)
        guard case .admitted(let again) = admission.admit(try address("10.0.0.1")) else {
            Issue.record("10.0.0.1 kept a place from a refused connection")
            return
        }
        admission.release(again)
        admission.release(second)
        #expect(admission.admit(try address("127.0.0.1")) != .refused(.maxConnectionsPerAddress))
        #expect(admission.refusalCounts == ["max_connections_per_address": 1, "max_connections": 1])
    }

    @Test func noLimitsHoldNoPlace() throws {
        let (admission, directory) = try admission([])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(admission.admit(try address("127.0.0.1")) == .admitted(ConnectionAdmission.Reservation()))
    }
}
