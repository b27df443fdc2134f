// Package release holds the pure rules of mirrornet's releases and code
// integrity, on top of the signed records of package attest:
//
//   - [Book] keeps each app's chain of release records and applies TUF's
//     rules to every new one: versions only go up (rollback), expired records
//     are stale and never current (freeze), a maintainer change carries the
//     thresholds of both the old and the new set (rotation), and the first
//     record of an app is signed by the set its app ID commits to (anchor).
//   - [Builds] collects verified build attestations per app version, and
//     [CheckIntegrity] turns them into "verified · N builders", "diverges" or
//     "unverified" for a release ([Summary] makes the one-line status).
//   - Publisher key files ([GenerateKeyFile], [LoadKeyFile]) and [Build],
//     which makes and signs a release record from key files.
//   - [ParseAppRef] parses "APP-ID" and "APP-ID@VERSION"; [DiffFiles]
//     compares two per-file CID listings of a bundle.
//
// Nothing here starts a goroutine, touches the network or reads the clock:
// callers pass now. Only the key file functions touch the file system. A
// Book is not safe for concurrent use; the node owns one and serialises
// access.
package release
