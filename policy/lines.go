package policy

import (
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// indexLines maps the dotted path of every table and key in a TOML
// document ("nix.store", "keys[1]", "keys[1].role") to its 1-based line,
// so that validation errors can say where the offending value is. It is
// best effort: a document that does not parse yields what was seen so far.
func indexLines(data []byte) map[string]int {
	lines := map[string]int{}
	arrays := map[string]int{} // array-of-tables name -> last index
	var p unstable.Parser
	p.Reset(data)
	prefix := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			name := inArrays(joinKey(e.Key()), arrays)
			if e.Kind == unstable.ArrayTable {
				arrays[name]++
				name = fmt.Sprintf("%s[%d]", name, arrays[name]-1)
			}
			prefix = name
			lines[name] = lineOf(&p, e)
		case unstable.KeyValue:
			name := joinKey(e.Key())
			if prefix != "" {
				name = prefix + "." + name
			}
			lines[name] = lineOf(&p, e)
		}
	}
	return lines
}

// inArrays rewrites a table's dotted name so that each enclosing array
// of tables names its last element: "cas.principals" after [[cas]] twice
// is "cas[1].principals".
func inArrays(name string, arrays map[string]int) string {
	parts := strings.Split(name, ".")
	out := ""
	for i, part := range parts {
		if i > 0 {
			out += "."
		}
		out += part
		if n, ok := arrays[out]; ok && n > 0 && i < len(parts)-1 {
			out = fmt.Sprintf("%s[%d]", out, n-1)
		}
	}
	return out
}

func joinKey(it unstable.Iterator) string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, ".")
}

func lineOf(p *unstable.Parser, e *unstable.Node) int {
	it := e.Key()
	if it.Next() {
		return p.Shape(it.Node().Raw).Start.Line
	}
	return 0
}
