import OpenSSLTLS
import Testing

@Suite struct TLSRefusalCounterTests {
    /// A flood of refusals gets 20 log lines a second; the rest are counted by reason for one summary line, and
    /// the counters themselves miss none.
    @Test func logLinesAreLimitedAndTheRestSummedUp() {
        let counter = TLSRefusalCounter()
        var admitted = 0
        for index in 0..<500 {
            let reason = index.isMultiple(of: 2) ? "handshake timeout" : "wrong version number"
            counter.increment(reason: reason)
            if counter.admitLogLine(reason: reason) { admitted += 1 }
        }
        #expect(admitted == TLSRefusalCounter.logLinesPerSecond)
        let suppressed = counter.takeSuppressed()
        #expect(suppressed.values.reduce(0, +) == 500 - admitted)
        #expect(suppressed["handshake timeout"] == 240)
        #expect(suppressed["wrong version number"] == 240)
        #expect(counter.takeSuppressed().isEmpty)
        #expect(counter.total == 500)
    }
}
