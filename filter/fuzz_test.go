package filter

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// FuzzMetadataFilter checks that any path and metadata key compile or fail cleanly, and
// that a compiled exists condition matches exactly when the key path is present.
func FuzzMetadataFilter(f *testing.F) {
	f.Add("camera.site", "camera", "site")
	f.Add("a..b", "a", "b")
	f.Add("", "x", "y")
	f.Add("x.y.z", "x", "y")

	f.Fuzz(func(t *testing.T, path, outer, inner string) {
		// A Struct holds only valid UTF-8 strings, so other inputs cannot reach the filter.
		if !utf8.ValidString(path) || !utf8.ValidString(outer) || !utf8.ValidString(inner) {
			t.Skip()
		}

		params := requireStruct(t, map[string]any{"conditions": []any{map[string]any{"path": path, "exists": true}}})

		op, err := newMetadataFilter("n1", params)
		if err != nil {
			if path != "" && !strings.Contains(path, "..") && !strings.HasPrefix(path, ".") && !strings.HasSuffix(path, ".") {
				t.Fatalf("newMetadataFilter(%q): %v", path, err)
			}
			return
		}

		metadata := requireStruct(t, map[string]any{outer: map[string]any{inner: "v"}})
		item := &Item{Input: &clarifaipb.Input{Data: &clarifaipb.Data{Metadata: metadata}}}

		got, err := op.Apply(context.Background(), item, concepts("a", float32(0.5)))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}

		want := path == outer+"."+inner || path == outer
		if !strings.Contains(outer, ".") && !strings.Contains(inner, ".") && (len(got) > 0) != want {
			t.Errorf("path %q on {%q: {%q}} kept = %v, want %v", path, outer, inner, len(got) > 0, want)
		}
	})
}
