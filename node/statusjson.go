package node

import (
	"bufio"
	"encoding/json"
	"io"
)

// writeStatus writes the same JSON as encoding Status() with two-space
// indentation, one mirror at a time: the response for a view of ten
// thousand mirrors never sits whole in memory (a flood of strangers must
// not make every status request cost the size of the view).
func (n *Node) writeStatus(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	first := true
	var err error
	n.statusWith(func(s SelfStatus) {
		var b []byte
		if b, err = json.MarshalIndent(s, "  ", "  "); err != nil {
			return
		}
		bw.WriteString("{\n  \"self\": ")
		bw.Write(b)
		bw.WriteString(",\n  \"mirrors\": [")
	}, func(m MirrorStatus) bool {
		if err != nil {
			return false
		}
		var b []byte
		if b, err = json.MarshalIndent(m, "    ", "  "); err != nil {
			return false
		}
		if first {
			bw.WriteString("\n    ")
			first = false
		} else {
			bw.WriteString(",\n    ")
		}
		_, err = bw.Write(b)
		return err == nil
	})
	if err != nil {
		return err
	}
	if !first {
		bw.WriteString("\n  ")
	}
	b, err := json.MarshalIndent(n.bitswapReport(), "  ", "  ")
	if err != nil {
		return err
	}
	bw.WriteString("],\n  \"bitswap\": ")
	bw.Write(b)
	bw.WriteString("\n}\n")
	return bw.Flush()
}
