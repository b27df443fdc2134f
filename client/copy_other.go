//go:build !linux

package client

import "os"

func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff int64, n int) error {
	return copyRangeSlow(src, srcOff, dst, dstOff, n)
}

func syncFS(string) error { return errNoSyncFS }
