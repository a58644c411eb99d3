package policy

import (
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// checkNameCase refuses a setting whose name is one of the file's only
// when case is ignored: go-toml matches names case-insensitively, so
// AuthoriZed_keYs would silently be taken for authorized_keys. It walks
// the TOML document (tables, dotted keys, inline tables and arrays of
// them) along the shape of fileConfig; names it does not know at all are
// left to the decoder, and the keys of maps (nix.env) are free.
func checkNameCase(name string, data []byte) error {
	var p unstable.Parser
	p.Reset(data)
	root := reflect.TypeOf(fileConfig{})
	table := root
	for p.NextExpression() {
		e := p.Expression()
		var err error
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, err = walkNames(&p, name, root, e.Key())
			if table != nil && e.Kind == unstable.ArrayTable && table.Kind() == reflect.Slice {
				table = table.Elem()
			}
		case unstable.KeyValue:
			var t reflect.Type
			if t, err = walkNames(&p, name, table, e.Key()); err == nil && t != nil {
				err = walkValueNames(&p, name, t, e.Value())
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkNames follows the key's parts from t and returns the type the key
// names, or nil when it leaves what is known.
func walkNames(p *unstable.Parser, file string, t reflect.Type, key unstable.Iterator) (reflect.Type, error) {
	for key.Next() && t != nil {
		n := key.Node()
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			seg := string(n.Data)
			exact, folded := tomlField(t, seg)
			if exact == nil && folded != "" {
				return nil, errorf("%s:%d: unknown setting %q: did you mean %q? (names are exact)", file, p.Shape(n.Raw).Start.Line, seg, folded)
			}
			t = exact
		default:
			return nil, nil
		}
	}
	return t, nil
}

// walkValueNames checks the names inside an inline table, or an array of
// them, of type t.
func walkValueNames(p *unstable.Parser, file string, t reflect.Type, v *unstable.Node) error {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			kv := it.Node()
			ct, err := walkNames(p, file, t, kv.Key())
			if err == nil && ct != nil {
				err = walkValueNames(p, file, ct, kv.Value())
			}
			if err != nil {
				return err
			}
		}
	case unstable.Array:
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Slice {
			return nil
		}
		it := v.Children()
		for it.Next() {
			if err := walkValueNames(p, file, t.Elem(), it.Node()); err != nil {
				return err
			}
		}
	}
	return nil
}

// tomlField returns the type of t's field whose toml name is exactly
// name, looking into embedded structs; or else the toml name that equals
// name when case is ignored.
func tomlField(t reflect.Type, name string) (exact reflect.Type, folded string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if e, fo := tomlField(f.Type, name); e != nil {
				return e, ""
			} else if fo != "" {
				folded = fo
			}
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case tag == "" || tag == "-":
		case tag == name:
			return f.Type, ""
		case strings.EqualFold(tag, name):
			folded = tag
		}
	}
	return nil, folded
}
