/// When to fetch an item again. Pure arithmetic on Unix seconds; the fetcher supplies the clock and the jitter.
///
/// After a success the item is due at the earlier of its refresh interval and a point well before it expires:
/// half-way through [thisUpdate, nextUpdate], or, once that has passed, half-way through what is left. Never
/// sooner than the floor, so a CA with short-lived CRLs or a broken nextUpdate cannot make us hammer it. A fixed
/// interval longer than the lifetime therefore cannot let an item go stale while its source is up.
///
/// After a failure it is due after an exponential backoff (starting at the floor, at most 10 s; doubling),
/// with ±20% jitter, capped at the interval.
public struct FetchSchedule: Sendable, Equatable {
    /// How often the item is fetched when nothing else asks for sooner.
    public var interval: Double
    /// The least delay after a success.
    public var floor: Double

    public init(interval: Duration, floor: Duration) {
        self.floor = max(1, Self.seconds(floor))
        self.interval = max(self.floor, Self.seconds(interval))
    }

    /// The delay after a successful fetch at `now` of an item valid over [thisUpdate, nextUpdate].
    public func delayAfterSuccess(now: Double, thisUpdate: Double?, nextUpdate: Double?) -> Double {
        var delay = interval
        if let nextUpdate {
            let remaining = nextUpdate - now
            if remaining <= 0 {
                delay = floor
            } else {
                var refreshAt = now + remaining / 2
                if let thisUpdate, nextUpdate > thisUpdate {
                    let halfLife = thisUpdate + (nextUpdate - thisUpdate) / 2
                    if halfLife > now { refreshAt = halfLife }
                }
                delay = min(delay, refreshAt - now)
            }
        }
        return max(floor, delay)
    }

    /// The delay after the `failures`-th failure in a row (1 for the first); `jitter` in [-1, 1].
    public func delayAfterFailure(failures: Int, jitter: Double) -> Double {
        let base = min(10, floor)
        let raw = base * Double(1 << min(max(failures, 1) - 1, 30))
        let jittered = raw * (1 + 0.2 * max(-1, min(1, jitter)))
        return max(1, min(interval, jittered))
    }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
