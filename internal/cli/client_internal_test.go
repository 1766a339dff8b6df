package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args       []string
		positional string
		sample     float64
	}{
		{[]string{"c1", "--sample", "0.5"}, "c1", 0.5},
		{[]string{"--sample", "0.5", "c1", "c2"}, "c1,c2", 0.5},
		{[]string{"c1", "--sample=0.5", "c2"}, "c1,c2", 0.5},
		{[]string{"--sample", "0.5", "--", "--not-a-flag", "c2"}, "--not-a-flag,c2", 0.5},
		{[]string{"c1", "--", "-x"}, "c1,-x", 0},
	}
	for _, tt := range tests {
		fs := newFlagSet("test", &strings.Builder{})
		sample := fs.Float64("sample", 0, "")
		got, err := parseInterspersed(fs, tt.args)
		if err != nil {
			t.Errorf("parseInterspersed(%q): %v", tt.args, err)
			continue
		}
		if strings.Join(got, ",") != tt.positional || *sample != tt.sample {
			t.Errorf("parseInterspersed(%q) = %q, sample %v; want %q, sample %v", tt.args, got, *sample, tt.positional, tt.sample)
		}
	}
}

func TestAPIBaseURL(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://collectord.internal/", "https://collectord.internal"},
		{"http://127.0.0.1:8080/prefix/", "http://127.0.0.1:8080/prefix"},
	}
	for _, tt := range tests {
		got, err := apiBaseURL(tt.raw)
		if err != nil || got != tt.want {
			t.Errorf("apiBaseURL(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}

	for _, raw := range []string{"ftp://127.0.0.1", "http://", "http://user:secret@127.0.0.1", "http://127.0.0.1?x=1"} {
		_, err := apiBaseURL(raw)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("apiBaseURL(%q) error = %v, want ErrUsage", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("apiBaseURL(%q) error quotes the password: %v", raw, err)
		}
	}
}
