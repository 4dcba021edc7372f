import Testing

@testable import BrokerConfiguration

@Suite struct EditDistanceTests {
    @Test(arguments: [
        ("", "", 0), ("abc", "", 3), ("", "abc", 3), ("verify", "verify", 0), ("verfy", "verify", 1),
        ("kitten", "sitting", 3), ("keyfiel", "keyfile", 2), ("flaw", "lawn", 2),
    ])
    func levenshtein(a: String, b: String, distance: Int) {
        #expect(EditDistance.levenshtein(a, b) == distance)
        #expect(EditDistance.levenshtein(b, a) == distance)
    }

    @Test func closestPicksTheNearestWithinThreshold() {
        #expect(EditDistance.closest(to: "verfy", among: ["certfile", "verify"]) == "verify")
        #expect(EditDistance.closest(to: "LOG.LEVEL", among: ["log.level", "log.to"]) == "log.level")
        #expect(EditDistance.closest(to: "zzzzzz", among: ["verify", "certfile"]) == nil)
        #expect(EditDistance.closest(to: "anything", among: []) == nil)
    }

    @Test func thresholdGrowsWithLength() {
        #expect(EditDistance.threshold(forLength: 3) == 1)
        #expect(EditDistance.threshold(forLength: 6) == 2)
        #expect(EditDistance.threshold(forLength: 20) == 3)
    }
}
