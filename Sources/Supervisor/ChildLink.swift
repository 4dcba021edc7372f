#if canImport(Glibc)
import Glibc
#endif
import ControlChannel
import ProcessSupport

/// The supervisor's end of one child's socketpair. Owned by `SupervisorService`, on its thread.
final class ChildLink {
    let pid: pid_t
    let fileDescriptor: Int32
    private var decoder = ChildMessageDecoder()
    private(set) var isClosed = false

    init(pid: pid_t, fileDescriptor: Int32) {
        self.pid = pid
        self.fileDescriptor = fileDescriptor
    }

    deinit {
        if !isClosed { Glibc.close(fileDescriptor) }
    }

    /// Sends a message; a child that cannot take it (gone, or its buffer full) is handled by waitpid/deadlines.
    func send(_ message: ChildMessage) -> Bool {
        guard !isClosed else { return false }
        do {
            try FileDescriptor.writeAll(fileDescriptor, message.encoded())
            return true
        } catch {
            return false
        }
    }

    /// Reads what is there. Returns the complete messages, or nil on EOF / a malformed frame (then the link closes).
    func receive() -> [ChildMessage]? {
        guard !isClosed else { return nil }
        var messages: [ChildMessage] = []
        while true {
            let bytes: [UInt8]
            do {
                bytes = try FileDescriptor.readAvailable(fileDescriptor, limit: 4096)
            } catch {
                if error.errno == EAGAIN || error.errno == EWOULDBLOCK { return messages }
                close()
                return nil
            }
            if bytes.isEmpty {
                close()
                return messages.isEmpty ? nil : messages
            }
            decoder.append(bytes)
            do {
                while let message = try decoder.next() { messages.append(message) }
            } catch {
                close()
                return nil
            }
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fileDescriptor)
    }
}

/// One connection on the control socket, read until a full line arrives.
final class ControlClient {
    let fileDescriptor: Int32
    var buffer: [UInt8] = []
    let acceptedAt: MonotonicInstant

    init(fileDescriptor: Int32, acceptedAt: MonotonicInstant) {
        self.fileDescriptor = fileDescriptor
        self.acceptedAt = acceptedAt
    }

    deinit {
        Glibc.close(fileDescriptor)
    }
}
