import Testing

@testable import BrokerConfiguration

@Suite struct ConfigurationErrorTests {
    @Test func descriptionHasFileLineKeyAndMessage() {
        let error = ConfigurationError(
            file: "etc/gatehouse.conf", line: 12, key: "listener.ssl.external.verfy",
            message: "unknown key (did you mean 'listener.ssl.external.verify'?)")
        #expect(
            error.description
                == "etc/gatehouse.conf:12: listener.ssl.external.verfy: unknown key (did you mean 'listener.ssl.external.verify'?)"
        )
    }

    @Test func descriptionOmitsMissingParts() {
        #expect(ConfigurationError(file: "a.conf", line: nil, key: nil, message: "m").description == "a.conf: m")
        #expect(ConfigurationError(file: "a.conf", line: 3, key: nil, message: "m").description == "a.conf:3: m")
        #expect(ConfigurationError(file: "a.conf", line: nil, key: "k", message: "m").description == "a.conf: k: m")
    }

    @Test func errorsDescriptionHasOneLinePerError() {
        let errors = ConfigurationErrors(errors: [
            ConfigurationError(file: "a.conf", line: 1, key: "x", message: "one"),
            ConfigurationError(file: "a.conf", line: 2, key: nil, message: "two"),
        ])
        #expect(errors.description == "a.conf:1: x: one\na.conf:2: two")
    }
}
