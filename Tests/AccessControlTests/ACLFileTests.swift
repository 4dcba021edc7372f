@testable import AccessControl
import Testing

@Suite struct ACLFileTests {
    let acl: ACLFile

    init() throws {
        acl = try ACLFile(parsing: """
            # anonymous clients
            topic read public/#
            topic write public/inbox

            user alice
            topic readwrite alice/#
            topic deny alice/secret
            topic read sensors/+/temperature

            user bob
            topic bob/#

            pattern write devices/%c/telemetry
            pattern read users/%u/#
            """, path: "acl")
    }

    @Test func anonymousRulesApplyOnlyWithoutUsername() {
        #expect(acl.canSubscribe(filter: "public/#", clientID: "c", username: nil))
        #expect(acl.canPublish(topic: "public/inbox", clientID: "c", username: nil))
        #expect(!acl.canPublish(topic: "public/news", clientID: "c", username: nil))
        #expect(!acl.canSubscribe(filter: "public/#", clientID: "c", username: "alice"))
    }

    @Test func userRules() {
        #expect(acl.canPublish(topic: "alice/x/y", clientID: "c", username: "alice"))
        #expect(acl.canReceive(topic: "alice/x", clientID: "c", username: "alice"))
        #expect(!acl.canPublish(topic: "bob/x", clientID: "c", username: "alice"))
        // No access word means readwrite, as in Mosquitto.
        #expect(acl.canPublish(topic: "bob/x", clientID: "c", username: "bob"))
        #expect(acl.canSubscribe(filter: "bob/+", clientID: "c", username: "bob"))
        // Unknown users get only the patterns.
        #expect(!acl.canPublish(topic: "alice/x", clientID: "c", username: "mallory"))
    }

    @Test func denyWins() {
        #expect(!acl.canPublish(topic: "alice/secret", clientID: "c", username: "alice"))
        #expect(!acl.canReceive(topic: "alice/secret", clientID: "c", username: "alice"))
        // A subscription that could receive the denied topic is refused.
        #expect(!acl.canSubscribe(filter: "alice/#", clientID: "c", username: "alice"))
        #expect(!acl.canSubscribe(filter: "alice/+", clientID: "c", username: "alice"))
        #expect(acl.canSubscribe(filter: "alice/public/#", clientID: "c", username: "alice"))
    }

    @Test func subscriptionMustBeCoveredByAReadRule() {
        #expect(acl.canSubscribe(filter: "sensors/kitchen/temperature", clientID: "c", username: "alice"))
        #expect(acl.canSubscribe(filter: "sensors/+/temperature", clientID: "c", username: "alice"))
        #expect(!acl.canSubscribe(filter: "sensors/#", clientID: "c", username: "alice"))
        #expect(!acl.canSubscribe(filter: "sensors/+/+", clientID: "c", username: "alice"))
        #expect(!acl.canPublish(topic: "sensors/kitchen/temperature", clientID: "c", username: "alice"))
    }

    @Test func patternsSubstituteClientIDAndUsername() {
        #expect(acl.canPublish(topic: "devices/dev42/telemetry", clientID: "dev42", username: nil))
        #expect(!acl.canPublish(topic: "devices/dev43/telemetry", clientID: "dev42", username: nil))
        #expect(acl.canSubscribe(filter: "users/alice/inbox", clientID: "x", username: "alice"))
        #expect(!acl.canSubscribe(filter: "users/bob/inbox", clientID: "x", username: "alice"))
        // %u needs a username.
        #expect(!acl.canReceive(topic: "users//inbox", clientID: "x", username: nil))
    }

    @Test func wildcardsInIdentitiesDoNotWidenPatterns() {
        #expect(!acl.canPublish(topic: "devices/+/telemetry", clientID: "+", username: nil))
        #expect(!acl.canPublish(topic: "devices/a/telemetry", clientID: "#", username: nil))
        #expect(!acl.canReceive(topic: "users/x/y", clientID: "c", username: "a/b"))
    }

    @Test func dollarTopicsAreNotMatchedByLeadingWildcards() throws {
        let open = try ACLFile(parsing: "topic readwrite #\n", path: "acl")
        #expect(open.canPublish(topic: "a/b", clientID: "c", username: nil))
        #expect(!open.canPublish(topic: "$SYS/x", clientID: "c", username: nil))
    }

    @Test func emptyFileDeniesEverything() throws {
        let empty = try ACLFile(parsing: "", path: "acl")
        #expect(!empty.canPublish(topic: "a", clientID: "c", username: nil))
        #expect(!empty.canSubscribe(filter: "a", clientID: "c", username: "u"))
    }

    @Test func reportsErrorsWithLineNumbers() {
        #expect(throws: AccessControlError(path: "acl", line: 2, message: "unknown keyword 'topics' (expected user, topic or pattern)")) {
            try ACLFile(parsing: "user a\ntopics read x\n", path: "acl")
        }
        #expect(throws: AccessControlError(path: "acl", line: 1, message: "missing topic")) {
            try ACLFile(parsing: "topic read\n", path: "acl")
        }
        #expect(throws: AccessControlError(path: "acl", line: 1, message: "expected 'user NAME', 'topic …' or 'pattern …'")) {
            try ACLFile(parsing: "topic\n", path: "acl")
        }
    }

    @Test func filterHelpers() {
        func levels(_ s: String) -> [Substring] { s.split(separator: "/", omittingEmptySubsequences: false) }
        #expect(ACLFile.filter(levels("a/#"), matchesTopic: "a"))
        #expect(ACLFile.filter(levels("a/+"), matchesTopic: "a/"))
        #expect(!ACLFile.filter(levels("a/+"), matchesTopic: "a"))
        #expect(ACLFile.filter(levels("a/+/c"), covers: levels("a/b/c")))
        #expect(!ACLFile.filter(levels("a/b/c"), covers: levels("a/+/c")))
        #expect(ACLFile.filter(levels("a/#"), covers: levels("a/+/c/#")))
        #expect(ACLFile.filter(levels("a/+"), overlaps: levels("+/b")))
        #expect(!ACLFile.filter(levels("a/b"), overlaps: levels("a/c")))
        #expect(ACLFile.filter(levels("a/b/#"), overlaps: levels("a/b")))
    }
}
