import Testing

@testable import BrokerConfiguration

@Suite struct PathNormalizerTests {
    @Test(arguments: [
        ("/a/b/../c", "/a/c"), ("/a/./b/", "/a/b"), ("//a//b", "/a/b"), ("/..", "/"), ("/", "/"),
        ("/a/b/../../..", "/"),
    ])
    func normalize(path: String, expected: String) {
        #expect(PathNormalizer.normalize(path) == expected)
    }

    @Test func relativePathsResolveAgainstTheBase() {
        #expect(PathNormalizer.absolute("../var/pki/ca.pem", relativeTo: "/srv/etc") == "/srv/var/pki/ca.pem")
        #expect(PathNormalizer.absolute("/abs/./x", relativeTo: "/srv/etc") == "/abs/x")
        #expect(PathNormalizer.parent(of: "/srv/etc/gatehouse.conf") == "/srv/etc")
        #expect(PathNormalizer.parent(of: "/gatehouse.conf") == "/")
    }
}
