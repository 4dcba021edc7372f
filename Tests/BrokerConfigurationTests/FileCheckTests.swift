import Foundation
import Testing

@testable import BrokerConfiguration

@Suite struct FileCheckTests {
    @Test func messages() {
        #expect(FileCheck.message(path: "/x", exists: false, isDirectory: false, isReadable: false)
            == "file not found: /x")
        #expect(FileCheck.message(path: "/x", exists: true, isDirectory: true, isReadable: true) == "not a file: /x")
        #expect(FileCheck.message(path: "/x", exists: true, isDirectory: false, isReadable: false)
            == "file not readable: /x")
        #expect(FileCheck.message(path: "/x", exists: true, isDirectory: false, isReadable: true) == nil)
    }

    @Test func realFiles() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/present.pem"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        #expect(FileCheck.problem(at: file) == nil)
        #expect(FileCheck.problem(at: directory) == "not a file: \(directory)")
        #expect(FileCheck.problem(at: directory + "/missing.pem") == "file not found: \(directory)/missing.pem")
    }
}
