/// Levenshtein distance and the "did you mean" lookup built on it. Pure functions.
enum EditDistance {
    /// The number of single-character insertions, deletions and substitutions that turn `a` into `b`.
    static func levenshtein(_ a: String, _ b: String) -> Int {
        let source = Array(a)
        let target = Array(b)
        if source.isEmpty { return target.count }
        if target.isEmpty { return source.count }
        var previous = Array(0...target.count)
        var current = [Int](repeating: 0, count: target.count + 1)
        for i in 1...source.count {
            current[0] = i
            for j in 1...target.count {
                let substitution = previous[j - 1] + (source[i - 1] == target[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[target.count]
    }

    /// The largest distance still worth a suggestion for a word of this length.
    static func threshold(forLength length: Int) -> Int {
        switch length {
        case ..<5: 1
        case ..<9: 2
        default: 3
        }
    }

    /// The candidate closest to `word` (ignoring case), if it is within `threshold(forLength:)`;
    /// the earliest candidate wins a tie.
    static func closest(to word: String, among candidates: [String]) -> String? {
        let lowered = word.lowercased()
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = levenshtein(lowered, candidate.lowercased())
            if distance < (best?.distance ?? Int.max) {
                best = (candidate, distance)
            }
        }
        guard let best, best.distance <= threshold(forLength: word.count) else { return nil }
        return best.candidate
    }
}
