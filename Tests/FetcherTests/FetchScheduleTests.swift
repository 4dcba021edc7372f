@testable import Fetcher
import Testing

@Suite struct FetchScheduleTests {
    /// interval 1 h, floor 60 s.
    let schedule = FetchSchedule(interval: .seconds(3600), floor: .seconds(60))

    @Test func initClampsFloorAndInterval() {
        #expect(schedule.interval == 3600)
        #expect(schedule.floor == 60)
        // The floor is at least a second; the interval at least the floor.
        let tight = FetchSchedule(interval: .milliseconds(200), floor: .milliseconds(500))
        #expect(tight.floor == 1)
        #expect(tight.interval == 1)
        let inverted = FetchSchedule(interval: .seconds(30), floor: .seconds(120))
        #expect(inverted.interval == 120)
        #expect(FetchSchedule(interval: .milliseconds(2500), floor: .seconds(1)).interval == 2.5)
    }

    @Test func withoutNextUpdateTheIntervalApplies() {
        #expect(schedule.delayAfterSuccess(now: 1000, thisUpdate: nil, nextUpdate: nil) == 3600)
        #expect(schedule.delayAfterSuccess(now: 1000, thisUpdate: 900, nextUpdate: nil) == 3600)
    }

    @Test func aLongLivedItemUsesTheInterval() {
        // Valid for a week: half-life far beyond the interval.
        #expect(schedule.delayAfterSuccess(now: 1000, thisUpdate: 1000, nextUpdate: 1000 + 7 * 86_400) == 3600)
    }

    @Test func aShortLivedItemIsRefreshedAtHalfLife() {
        // [0, 2000]: half-life at 1000.
        #expect(schedule.delayAfterSuccess(now: 100, thisUpdate: 0, nextUpdate: 2000) == 900)
        #expect(schedule.delayAfterSuccess(now: 0, thisUpdate: 0, nextUpdate: 2000) == 1000)
    }

    @Test func pastHalfLifeHalfOfWhatIsLeft() {
        // Half-life (1000) has passed: half of the 500 s left.
        #expect(schedule.delayAfterSuccess(now: 1500, thisUpdate: 0, nextUpdate: 2000) == 250)
        // No thisUpdate: half of what is left, too.
        #expect(schedule.delayAfterSuccess(now: 1000, thisUpdate: nil, nextUpdate: 2000) == 500)
        // nextUpdate before thisUpdate (a broken item): the half-life is ignored.
        #expect(schedule.delayAfterSuccess(now: 500, thisUpdate: 2000, nextUpdate: 1000) == 250)
    }

    @Test func nextUpdatePassedMeansTheFloor() {
        #expect(schedule.delayAfterSuccess(now: 2500, thisUpdate: 0, nextUpdate: 2000) == 60)
        #expect(schedule.delayAfterSuccess(now: 2000, thisUpdate: 0, nextUpdate: 2000) == 60)
    }

    @Test func neverSoonerThanTheFloor() {
        // Lifetime 20 s: half-life 10 s, but the floor is 60 s.
        #expect(schedule.delayAfterSuccess(now: 0, thisUpdate: 0, nextUpdate: 20) == 60)
        // 100 s left after half-life: 50 s, raised to the floor.
        #expect(schedule.delayAfterSuccess(now: 1900, thisUpdate: 0, nextUpdate: 2000) == 60)
        // Every delay is within [floor, interval].
        for now in stride(from: 0.0, through: 10_000, by: 37) {
            let delay = schedule.delayAfterSuccess(now: now, thisUpdate: 0, nextUpdate: 5000)
            #expect(delay >= 60 && delay <= 3600, "now \(now): \(delay)")
        }
    }

    @Test func failureBackoffDoublesFromTheFloorUpToTheInterval() {
        let tests = FetchSchedule(interval: .seconds(60), floor: .seconds(1))
        let delays = (1...8).map { tests.delayAfterFailure(failures: $0, jitter: 0) }
        #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60])
        // The first backoff is at most 10 s, whatever the floor.
        let production = FetchSchedule(interval: .seconds(3600), floor: .seconds(60))
        #expect((1...6).map { production.delayAfterFailure(failures: $0, jitter: 0) } == [10, 20, 40, 80, 160, 320])
        #expect(production.delayAfterFailure(failures: 10, jitter: 0) == 3600)
        // A small floor starts small.
        let five = FetchSchedule(interval: .seconds(600), floor: .seconds(5))
        #expect(five.delayAfterFailure(failures: 1, jitter: 0) == 5)
    }

    @Test func failureCountsOutOfRangeAreSafe() {
        #expect(schedule.delayAfterFailure(failures: 0, jitter: 0) == 10)
        #expect(schedule.delayAfterFailure(failures: -3, jitter: 0) == 10)
        #expect(schedule.delayAfterFailure(failures: 64, jitter: 0) == 3600)
        #expect(schedule.delayAfterFailure(failures: Int.max, jitter: 1) == 3600)
    }

    @Test func jitterIsWithinTwentyPercent() {
        let five = FetchSchedule(interval: .seconds(600), floor: .seconds(5))
        #expect(five.delayAfterFailure(failures: 1, jitter: -1) == 4)
        #expect(five.delayAfterFailure(failures: 1, jitter: 1) == 6)
        #expect(five.delayAfterFailure(failures: 2, jitter: 0.5) == 11)
        // Jitter outside [-1, 1] is clamped.
        #expect(five.delayAfterFailure(failures: 1, jitter: 7) == 6)
        #expect(five.delayAfterFailure(failures: 1, jitter: -7) == 4)
        for failures in 1...6 {
            let raw = 5.0 * Double(1 << (failures - 1))
            for step in 0...20 {
                let jitter = -1 + Double(step) / 10
                let delay = five.delayAfterFailure(failures: failures, jitter: jitter)
                #expect(delay >= raw * 0.8 - 1e-9 && delay <= raw * 1.2 + 1e-9, "\(failures), \(jitter): \(delay)")
            }
        }
    }

    @Test func jitterNeverExceedsTheIntervalNorGoesBelowASecond() {
        let tests = FetchSchedule(interval: .seconds(60), floor: .seconds(1))
        // Capped after jitter: 32 × 1.2 would be 38.4, 64 × 1.2 is capped at 60.
        #expect(tests.delayAfterFailure(failures: 6, jitter: 1) == 38.4)
        #expect(tests.delayAfterFailure(failures: 7, jitter: 1) == 60)
        #expect(tests.delayAfterFailure(failures: 7, jitter: -1) == 51.2)
        // 1 s × 0.8 would be 0.8 s: never below a second.
        #expect(tests.delayAfterFailure(failures: 1, jitter: -1) == 1)
    }
}
