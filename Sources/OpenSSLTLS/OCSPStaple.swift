extension OCSP {
    /// `response` re-encoded to carry only the certificate a client needs to verify it, since every handshake that
    /// asks for the staple carries it whole. The signature covers tbsResponseData only, so dropping certificates
    /// leaves it valid.
    ///
    /// Kept: the delegated responder certificate that signed it; when the issuer signed it, the issuer's
    /// certificate only if the response carried it and `servedChain` (the listener's certfile, which the server
    /// sends) does not: a client verifies the staple with `OCSP_basic_verify(response, peer chain, store)` (Mosquitto,
    /// libcurl), which finds the signer in the response or in the peer's chain, never in its trust store. Whatever
    /// else the responder put in (its whole chain, unrelated certificates) goes.
    ///
    /// Returns `response.derBytes` unchanged when there is nothing to drop. The caller verifies the result again.
    public static func stapleEncoding(
        of response: OCSPVerifiedResponse, servedChain: [X509Certificate]
    ) throws(OCSPValidationError) -> [UInt8] {
        do {
            return try response.derBytes.withUnsafeBufferPointer { buffer throws(DERReader.Failure) in
                try reencode(DERReader(bytes: buffer), response: response, servedChain: servedChain)
            }
        } catch {
            throw .malformed("cannot re-encode the OCSP response: \(error.message)")
        }
    }

    private static func reencode(
        _ reader: DERReader, response: OCSPVerifiedResponse, servedChain: [X509Certificate]
    ) throws(DERReader.Failure) -> [UInt8] {
        // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT SEQUENCE {
        //     responseType OBJECT IDENTIFIER, response OCTET STRING } }
        let outer = try reader.element(at: 0, limit: reader.bytes.count)
        let parts = try reader.children(of: outer)
        guard outer.tag == 0x30, parts.count == 2, parts[0].tag == 0x0a, parts[1].tag == 0xa0 else {
            throw DERReader.Failure(message: "not an OCSPResponse")
        }
        let wrapper = try reader.children(of: parts[1], depth: 1)
        guard wrapper.count == 1, wrapper[0].tag == 0x30 else {
            throw DERReader.Failure(message: "bad responseBytes")
        }
        let typed = try reader.children(of: wrapper[0], depth: 2)
        guard typed.count == 2, typed[0].tag == 0x06, typed[1].tag == 0x04 else {
            throw DERReader.Failure(message: "bad responseBytes")
        }
        // BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING,
        //     certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
        let basic = try reader.element(at: typed[1].contents.lowerBound, limit: typed[1].contents.upperBound, depth: 3)
        let fields = try reader.children(of: basic, depth: 3)
        guard basic.tag == 0x30, fields.count == 3 || fields.count == 4 else {
            throw DERReader.Failure(message: "bad BasicOCSPResponse")
        }
        var carried: [[UInt8]] = []
        if fields.count == 4 {
            let explicit = try reader.children(of: fields[3], depth: 4)
            guard fields[3].tag == 0xa0, explicit.count == 1, explicit[0].tag == 0x30 else {
                throw DERReader.Failure(message: "bad certs in BasicOCSPResponse")
            }
            carried = try reader.children(of: explicit[0], depth: 5).map(reader.encoding(of:))
        }

        let kept: [[UInt8]]
        if !response.isSignedByIssuer {
            kept = [response.signerDER]
        } else if servedChain.contains(where: { $0.derBytes == response.signerDER })
            || !carried.contains(response.signerDER)
        {
            kept = []
        } else {
            kept = [response.signerDER]
        }
        guard kept != carried else {
            return response.derBytes
        }

        var basicContents = fields.prefix(3).flatMap(reader.encoding(of:))
        if !kept.isEmpty {
            basicContents += DERWriter.element(
                tag: 0xa0, contents: DERWriter.element(tag: 0x30, contents: kept.flatMap { $0 }))
        }
        let basicBytes = DERWriter.element(tag: 0x30, contents: basicContents)
        let responseBytes = DERWriter.element(
            tag: 0x30, contents: reader.encoding(of: typed[0]) + DERWriter.element(tag: 0x04, contents: basicBytes))
        return DERWriter.element(
            tag: 0x30,
            contents: reader.encoding(of: parts[0]) + DERWriter.element(tag: 0xa0, contents: responseBytes))
    }
}
