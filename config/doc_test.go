package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"testing"
)

// TestSchema_EveryFieldDocumented keeps the promise that the schema is its own
// reference: every field of every struct in config.go has a doc comment.
func TestSchema_EveryFieldDocumented(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := spec.Type.(*ast.StructType)
		if !ok {
			return true
		}
		for _, field := range st.Fields.List {
			if field.Doc == nil && len(field.Names) > 0 {
				t.Errorf("%s.%s has no doc comment", spec.Name.Name, field.Names[0].Name)
			}
		}
		return true
	})
}

func TestExampleFile_MatchesDefaults(t *testing.T) {
	cfg := Config{}
	if err := cfg.LoadFile("collectord.example.yaml"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("example file differs from the defaults:\nfile:    %+v\ndefault: %+v", cfg, Default())
	}
}
