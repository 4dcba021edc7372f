#if canImport(Glibc)
import Glibc
#endif
import BrokerConfiguration
import ControlChannel
import Foundation
import ProcessSupport
import Supervisor

/// The CLI side of the control socket: one request, one response.
struct ControlClientConnection {
    let socketPath: String

    init(configuration: GatehouseConfiguration) {
        socketPath = RunPaths(configuration).controlSocket
    }

    init(runDirectory: String) {
        socketPath = RunPaths(runDirectory: runDirectory).controlSocket
    }

    enum ConnectionError: Error, CustomStringConvertible {
        case notRunning(String)
        case io(String)

        var description: String {
            switch self {
            case .notRunning(let path): "Gatehouse is not running (no supervisor answers on \(path))"
            case .io(let detail): "control socket: \(detail)"
            }
        }
    }

    func send(_ request: ControlRequest, timeout: Duration = .seconds(10)) throws -> ControlResponse {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(to: socketPath, timeout: timeout)
        } catch {
            if error.errno == ENOENT || error.errno == ECONNREFUSED { throw ConnectionError.notRunning(socketPath) }
            throw ConnectionError.io("\(error)")
        }
        defer { close(fd) }
        do {
            try FileDescriptor.writeAll(fd, try request.encodedLine())
            var received: [UInt8] = []
            while !received.contains(UInt8(ascii: "\n")) {
                let chunk = try FileDescriptor.readAvailable(fd)
                if chunk.isEmpty { break }
                received += chunk
            }
            let line = received.prefix { $0 != UInt8(ascii: "\n") }
            return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        } catch let error as ConnectionError {
            throw error
        } catch {
            throw ConnectionError.io("\(error)")
        }
    }
}
