package node

// Version is the software version mirrors announce in their liveness
// statements. Release builds override it with
// -ldflags "-X github.com/mirrornet/mirrornet/node.Version=v1.2.3".
var Version = "v0.1.0-dev"
