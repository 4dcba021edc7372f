#if canImport(Glibc)
import Glibc
#endif
import AccessControl
import ArgumentParser
import ProcessSupport

/// `gatehouse passwd`: adds, replaces or deletes a user in a Mosquitto-format password file (`password_file`).
/// The hashes are Mosquitto 2's `$7$` (PBKDF2-SHA512), so the file also works with Mosquitto and vice versa.
struct PasswdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passwd",
        abstract: "Add or replace a user in a password file (Mosquitto format); run `gatehouse reload` afterwards.")

    @Flag(name: .customShort("c"), help: "Create a new file, replacing an existing one.")
    var create = false

    @Flag(name: .customShort("D"), help: "Delete the user.")
    var delete = false

    @Argument(help: "The password file.")
    var file: String

    @Argument(help: "The username.")
    var username: String

    @Argument(help: "The password (prompted for when omitted; prefer the prompt, arguments show in ps).")
    var password: String?

    func run() throws {
        var passwords = PasswordFile()
        if !create, FileDescriptor.fileExists(file) {
            guard let bytes = FileDescriptor.readFile(file) else {
                throw Failure("cannot read \(file): \(String(cString: strerror(errno)))")
            }
            do {
                passwords = try PasswordFile(parsing: String(decoding: bytes, as: UTF8.self), path: file)
            } catch {
                throw Failure("\(error)")
            }
        } else if !create {
            throw Failure("\(file) does not exist (use -c to create it)")
        }
        if delete {
            guard passwords.remove(username: username) else { throw Failure("no user '\(username)' in \(file)") }
        } else {
            let secret = try password ?? Self.prompt()
            do {
                try passwords.set(username: username, password: Array(secret.utf8))
            } catch {
                throw Failure("\(error)")
            }
        }
        do {
            try FileDescriptor.writeAtomically(Array(passwords.text.utf8), to: file, mode: 0o600)
        } catch {
            throw Failure("cannot write \(file): \(error)")
        }
    }

    /// Reads the password twice from the terminal without echo (or once from a pipe).
    static func prompt() throws -> String {
        guard isatty(0) == 1 else {
            guard let line = readLine(strippingNewline: true) else { throw Failure("no password given on stdin") }
            return line
        }
        func read(_ label: String) -> String? {
            var settings = termios()
            tcgetattr(0, &settings)
            var silent = settings
            silent.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSANOW, &silent)
            defer {
                tcsetattr(0, TCSANOW, &settings)
                Console.out("")
            }
            FileDescriptorConsole.write(label)
            return readLine(strippingNewline: true)
        }
        guard let first = read("Password: "), let second = read("Reenter password: ") else {
            throw Failure("no password given")
        }
        guard first == second else { throw Failure("passwords do not match") }
        return first
    }
}

private enum FileDescriptorConsole {
    static func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }
}
