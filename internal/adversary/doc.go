// Package adversary holds mirrornet's threat model as code: each test file
// is one attacker, run against real nodes and light clients in one process
// (mocknet hosts, loopback HTTP), asserting the bound that defeats it. The
// package has no non-test code but this comment.
//
// Anyone may run a mirror with as many keys as they like, so every input
// from the network has a cost bound, and a test here sends more than it:
//
//   - flood*_test.go: strangers flooding gossip. Ten thousand valid
//     statements from throwaway keys must not grow a mirror's memory by
//     more than 64 MiB (the health view keeps at most --max-mirrors mirrors
//     within --max-statement-bytes, evicting strangers first), and its
//     status page keeps answering; one key publishing a thousand statements
//     a second gets at most two a heartbeat accepted and forwarded (the
//     per-signer rate limit); an honest peer's burst of IHAVEs after spam
//     is answered, not ignored.
//   - client*_test.go: a lying bootstrap minting ten thousand mirrors. A
//     light client contacts at most MaxSources of them, holds its
//     statements within a byte budget while verifying them as it reads, and
//     only uses http(s)://host[:port] URLs: it cannot be turned into a
//     weapon against a third party, and still fetches from honest mirrors.
//   - builders*_test.go: strangers attesting builds. Only the builder keys
//     an app's signed release names move its integrity badge; anyone else
//     shows as "unlisted" and changes nothing.
//   - sybil*_test.go: identity farms and unobserved observers trying to make
//     a mirror verified or degraded. Thirty identities on one IP, and three
//     identities the receiving mirror never connected to, sign passes for a
//     mirror that serves nothing and failures for one that serves: the
//     verdict stays where the honest observers put it. A pass counts only
//     with the target's receipt for a nonce nobody chose (derived from the
//     epoch, round, target and observer); failures count only as a majority
//     of a committee with one seat per observed failure domain, where the
//     farm is one domain and every unobserved identity shares the one
//     domain "unknown"; observation reports place a mirror only when two
//     observed domains agree; effective redundancy counts the farm once.
//     These tests drive the components a mirror runs (attest.Verify, the
//     probe evidence and the domain placer) with signed statements, as
//     gossip delivers them, and show the same attack succeeding against
//     per-identity domains (the rule they replace).
//
// Every refusal is one debug line and a count in /metrics by reason
// (mirrornet_statements_total{reason="rate_limited"|"view_full"|
// "over_budget"}, mirrornet_probe_results_total{reason="not_seated"|
// "receipt"}, mirrornet_domain_reports_total{result="unobserved"}, ...);
// the tests check the counts as well as the effect.
package adversary
