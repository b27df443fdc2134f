package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/node"
)

// flagSetsOf runs `mirrornet args... -h` in-process and returns the flag
// sets it built (by name, e.g. "node" or "ledger verify") and the usage
// text it printed.
func flagSetsOf(t *testing.T, args ...string) (map[string]*flag.FlagSet, string) {
	t.Helper()
	for fs := range usages {
		delete(usages, fs)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), append(slices.Clone(args), "-h"), func(string) string { return "" }, &out, &errb)
	if err != nil && err != errHelp {
		t.Fatalf("mirrornet %s -h: %v", strings.Join(args, " "), err)
	}
	sets := map[string]*flag.FlagSet{}
	for fs := range usages {
		sets[fs.Name()] = fs
	}
	return sets, errb.String()
}

// nodeFlagSet is the flag set of `mirrornet node`.
func nodeFlagSet(t *testing.T) *flag.FlagSet {
	t.Helper()
	sets, _ := flagSetsOf(t, "node")
	fs := sets["node"]
	if fs == nil {
		t.Fatal("node -h built no flag set called node")
	}
	return fs
}

var flagRE = regexp.MustCompile(`(?:^|[\s\x60(\[|])--?([a-z][a-z0-9-]*)`)

// splitRow splits a markdown table row on its unescaped pipes.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(strings.TrimSuffix(line, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// flagTableRow is one row of README's `mirrornet node` flag table.
type flagTableRow struct {
	line    int
	flags   []string // the flags the first column names, in order
	envs    []string // the MIRRORNET_* names it gives
	def     string   // the default column
	mention []string // flags named in the meaning column
}

// readmeNodeFlagTable parses the table under "| flag (env) | default |
// meaning |" in README.md.
func readmeNodeFlagTable(t *testing.T) []flagTableRow {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []flagTableRow
	in := false
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "| flag (env) | default | meaning |") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := splitRow(line)
		if len(cells) != 3 || strings.HasPrefix(cells[0], "---") {
			continue
		}
		r := flagTableRow{line: i + 1, def: cells[1]}
		for _, m := range flagRE.FindAllStringSubmatch(cells[0], -1) {
			r.flags = append(r.flags, m[1])
		}
		r.envs = regexp.MustCompile(`MIRRORNET_[A-Z0-9_]+`).FindAllString(cells[0], -1)
		for _, m := range flagRE.FindAllStringSubmatch(cells[2], -1) {
			r.mention = append(r.mention, m[1])
		}
		if len(r.flags) == 0 {
			t.Errorf("README.md:%d: a row of the node flag table names no flag: %q", r.line, cells[0])
		}
		rows = append(rows, r)
	}
	if len(rows) < 10 {
		t.Fatalf("README.md: found %d rows of the node flag table; has its header changed?", len(rows))
	}
	return rows
}

// defaultMatches reports whether the README's default column states a
// flag's default value.
func defaultMatches(readme string, f *flag.Flag) bool {
	s := strings.Trim(strings.TrimSpace(readme), "`")
	def := f.DefValue
	switch s {
	case def:
		return true
	case "none":
		return def == ""
	case "on":
		return def == "true"
	case "off":
		return def == "false" || def == ""
	case "unlimited":
		return def == "0"
	}
	if home, err := os.UserHomeDir(); err == nil && strings.HasPrefix(s, "~/") && filepath.Join(home, s[2:]) == def {
		return true
	}
	// A description ("TCP and QUIC on 4001", "from --http", "the
	// profile's") stands for a default the code computes: the flag's own
	// default must then be its zero value.
	if strings.ContainsAny(s, " '") || strings.HasPrefix(s, "from ") {
		return def == "" || def == "0" || def == "false"
	}
	return false
}

// The README's node flag table lists every flag `mirrornet node` defines,
// with its environment variable and its default, and no flag it does not
// define.
func TestREADMENodeFlagTableMatchesCode(t *testing.T) {
	fs := nodeFlagSet(t)
	rows := readmeNodeFlagTable(t)
	documented := map[string]bool{}
	for _, r := range rows {
		for _, name := range append(slices.Clone(r.flags), r.mention...) {
			if fs.Lookup(name) == nil {
				t.Errorf("README.md:%d: --%s is in the node flag table but 'mirrornet node' has no such flag", r.line, name)
			}
			documented[name] = true
		}
		for _, env := range r.envs {
			ok := false
			for _, name := range r.flags {
				ok = ok || envName(name) == env
			}
			if !ok {
				t.Errorf("README.md:%d: %s is not the environment variable of %v", r.line, env, r.flags)
			}
		}
		// The default column gives one default for the row, or one per
		// flag separated by commas.
		defs := []string{r.def}
		if parts := strings.Split(r.def, ", "); len(r.flags) > 1 && len(parts) == len(r.flags) {
			defs = parts
		}
		for i, name := range r.flags {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			d := defs[min(i, len(defs)-1)]
			if !defaultMatches(d, f) {
				t.Errorf("README.md:%d: --%s: the table says the default is %q, the code says %q", r.line, name, d, f.DefValue)
			}
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("README.md: 'mirrornet node --%s' (%s) is missing from the node flag table", f.Name, f.Usage)
		}
	})
}

// invocation is one `mirrornet COMMAND ...` in the documentation.
type invocation struct {
	where string // file:line
	words []string
}

var invocationRE = regexp.MustCompile(`(?:^|[\s/\x60])mirrornet ([a-z][a-z-]*(?:\s.*)?)$`)

// documentedInvocations finds the mirrornet command lines in README.md and
// docs/*.md: in fenced code blocks (continuation lines joined, comments
// dropped) and in inline code spans.
func documentedInvocations(t *testing.T) []invocation {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	var out []invocation
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(file, "../../")
		add := func(line int, text string) {
			if i := strings.Index(text, " #"); i >= 0 {
				text = text[:i]
			}
			m := invocationRE.FindStringSubmatch(text)
			if m == nil {
				return
			}
			out = append(out, invocation{where: name + ":" + strconv.Itoa(line), words: strings.Fields(m[1])})
		}
		fenced := false
		pending, start := "", 0
		for i, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fenced = !fenced
				continue
			}
			if fenced {
				if pending == "" {
					start = i + 1
				}
				if s, ok := strings.CutSuffix(strings.TrimRight(line, " "), `\`); ok {
					pending += s + " "
					continue
				}
				add(start, pending+line)
				pending = ""
				continue
			}
			for _, span := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
				add(i+1, span[1])
			}
		}
	}
	return out
}

// Every `mirrornet COMMAND --flag` in README.md and docs/ uses a flag that
// COMMAND defines, and every flag a command's usage line (`-h`) names
// exists.
func TestDocumentedInvocationsUseRealFlags(t *testing.T) {
	known := map[string]bool{}
	for _, c := range commands {
		known[c.name] = true
	}
	checked := 0
	for _, inv := range documentedInvocations(t) {
		cmd := inv.words[0]
		if !known[cmd] {
			if cmd != "help" && cmd != "node-" {
				t.Errorf("%s: 'mirrornet %s' is not a command", inv.where, cmd)
			}
			continue
		}
		args := []string{cmd}
		if len(inv.words) > 1 && regexp.MustCompile(`^[a-z]+$`).MatchString(inv.words[1]) {
			args = append(args, inv.words[1])
		}
		sets, _ := flagSetsOf(t, args...)
		fs := sets[strings.Join(args, " ")]
		if fs == nil {
			fs = sets[cmd]
		}
		if fs == nil {
			continue // a command without flags of its own (help text only)
		}
		for _, m := range flagRE.FindAllStringSubmatch(strings.Join(inv.words[1:], " "), -1) {
			if m[1] == "h" || m[1] == "help" {
				continue
			}
			checked++
			if fs.Lookup(m[1]) == nil {
				t.Errorf("%s: 'mirrornet %s' has no flag --%s", inv.where, fs.Name(), m[1])
			}
		}
	}
	t.Logf("checked %d documented flags", checked)
	if checked < 50 {
		t.Errorf("checked only %d documented flags; is the parser broken?", checked)
	}
	// Usage lines.
	for _, args := range [][]string{{"node"}, {"status"}, {"publish"}, {"follow"}, {"unfollow"}, {"ls"}, {"gc"},
		{"release"}, {"keygen"}, {"verify"}, {"fund", "create"}, {"ledger"}, {"ledger", "verify"}, {"ledger", "approve"},
		{"evidence", "export"}, {"get"}, {"testnet"}, {"service"}, {"debug", "pprof"}} {
		sets, usage := flagSetsOf(t, args...)
		synopsis, _, _ := strings.Cut(usage, "\n") // the usage line; what follows is prose
		for name, fs := range sets {
			for _, m := range flagRE.FindAllStringSubmatch(synopsis, -1) {
				if fs.Lookup(m[1]) == nil {
					t.Errorf("'mirrornet %s -h' names --%s, which %q does not define", strings.Join(args, " "), m[1], name)
				}
			}
		}
	}
}

// jsonFields returns the JSON field names of struct type t and every
// struct type it contains, with whether each is omitempty.
func jsonFields(t reflect.Type, into map[string]bool) map[string]bool {
	if into == nil {
		into = map[string]bool{}
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map || t.Kind() == reflect.Array {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return into
	}
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = strings.Contains(opts, "omitempty")
		jsonFields(f.Type, into)
	}
	return into
}

// readmeSchema returns the comment after the README line that starts with
// prefix, continuation comment lines included.
func readmeSchema(t *testing.T, prefix string) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		_, c, _ := strings.Cut(line, "#")
		for _, next := range lines[i+1:] {
			if s := strings.TrimSpace(next); strings.HasPrefix(s, "#") {
				c += " " + strings.TrimPrefix(s, "#")
				continue
			}
			break
		}
		return c
	}
	t.Fatalf("README.md has no line starting with %q", prefix)
	return ""
}

var schemaKeyRE = regexp.MustCompile(`"([a-z_]+)"(\??)`)

// The JSON schemas README gives for `ls --json` (exactly) and `status
// --json` (the fields it names) are the code's.
func TestREADMEJSONSchemas(t *testing.T) {
	ls := readmeSchema(t, "mirrornet ls --json")
	want := jsonFields(reflect.TypeFor[node.BundleStatus](), nil)
	got := map[string]bool{}
	for _, m := range schemaKeyRE.FindAllStringSubmatch(ls, -1) {
		if strings.Contains(ls, `"`+m[1]+`":`) && m[1] != "state" {
			continue
		}
		got[m[1]] = m[2] == "?"
	}
	for k, opt := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("README's ls --json schema lacks %q", k)
		} else if g != opt {
			t.Errorf("README's ls --json schema: %q optional=%v, code omitempty=%v", k, g, opt)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("README's ls --json schema has %q; BundleStatus has no such field", k)
		}
	}
	// The ls -h text gives the same schema.
	sets, _ := flagSetsOf(t, "ls")
	if u := sets["ls"].Lookup("json").Usage; !strings.Contains(u, strings.TrimSpace(ls[strings.Index(ls, "["):])) {
		t.Errorf("ls -h says %q, README says %q", u, ls)
	}

	status := readmeSchema(t, "mirrornet status --json")
	fields := jsonFields(reflect.TypeFor[node.Status](), nil)
	n := 0
	for _, m := range schemaKeyRE.FindAllStringSubmatch(status, -1) {
		n++
		if _, ok := fields[m[1]]; !ok {
			t.Errorf("README's status --json schema names %q; node.Status has no such field", m[1])
		}
	}
	if n < 5 {
		t.Errorf("README's status --json schema: parsed %d fields from %q", n, status)
	}
}

// README's architecture list of commands is the command table.
func TestREADMECommandList(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "one binary: ")
	if !ok {
		t.Fatal("README.md has no 'one binary:' command list")
	}
	list, _, _ := strings.Cut(after, "\nnode/")
	var got []string
	for _, w := range strings.Split(list, ",") {
		got = append(got, strings.TrimSpace(w))
	}
	var want []string
	for _, c := range commands {
		want = append(want, c.name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("README lists commands %v; the binary has %v", got, want)
	}
}
