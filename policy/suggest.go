package policy

import (
	"reflect"
	"strings"
)

// settingNames are the configuration's settings as dotted names
// ("limits.max_startups", "keys.role"), from fileConfig's toml tags.
var settingNames = func() []string {
	var names []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			switch {
			case tag == "-":
			case f.Anonymous && tag == "":
				walk(f.Type, prefix)
			case tag != "":
				name := prefix + tag
				names = append(names, name)
				walk(f.Type, name+".")
			}
		}
	}
	walk(reflect.TypeOf(fileConfig{}), "")
	return names
}()

// suggestSetting returns the setting whose name is nearest to name (by
// edit distance, at most a third of its length, at least 1), among those
// of its table; empty when none is near.
func suggestSetting(name string) string {
	table := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		table = name[:i+1]
	}
	best, bestD := "", max(1, len(name)/3)+1
	for _, s := range settingNames {
		if !strings.HasPrefix(s, table) || strings.Contains(s[len(table):], ".") {
			continue
		}
		if d := editDistance(strings.ToLower(name), s); d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
