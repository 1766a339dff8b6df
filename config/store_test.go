package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad_PostgresURL(t *testing.T) {
	const url = "postgres://collectord@db.internal:5432/collectord?sslmode=require"
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("store:\n  postgres_url: postgresql://file@db/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	fromFile, err := Load(newFlagSet(), []string{"--config", path}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if fromFile.Store.PostgresURL != "postgresql://file@db/x" {
		t.Errorf("postgres URL = %q, want the file's value", fromFile.Store.PostgresURL)
	}

	env := map[string]string{"COLLECTORD_POSTGRES_URL": url}
	fromEnv, err := Load(newFlagSet(), []string{"--config", path}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if fromEnv.Store.PostgresURL != url {
		t.Errorf("postgres URL = %q, want the environment's value", fromEnv.Store.PostgresURL)
	}

	fromFlag, err := Load(newFlagSet(), []string{"--postgres-url", "postgres://flag@db/x"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if fromFlag.Store.PostgresURL != "postgres://flag@db/x" {
		t.Errorf("postgres URL = %q, want the flag's value", fromFlag.Store.PostgresURL)
	}
}

func TestValidate_PostgresURL(t *testing.T) {
	const password = "s3cret-pw"
	cases := []struct {
		url   string
		valid bool
	}{
		{"postgres://u@127.0.0.1:5432/db?sslmode=disable", true},
		{"postgresql://u@db/x", true},
		{"postgres:///collectord?host=/var/run/postgresql", true},
		{"mysql://u:" + password + "@db/x", false},
		{"host=db user=u password=" + password, false},
		{"postgres://u:" + password + "@db:port/x", false},
	}
	for _, tc := range cases {
		cfg := Default()
		cfg.Store.PostgresURL = tc.url
		err := cfg.Validate()
		if tc.valid && err != nil {
			t.Errorf("Validate(%q) = %v, want valid", tc.url, err)
		}
		if tc.valid {
			continue
		}
		if err == nil {
			t.Errorf("Validate(%q) succeeded, want an error", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), "store.postgres_url") {
			t.Errorf("error %q does not name store.postgres_url", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("error %q repeats the password", err)
		}
	}
}

// TestLoad_PostgresURLHelpHidesPassword prints the flag help with a URL set
// in the environment: the default shown must not carry the password.
func TestLoad_PostgresURLHelpHidesPassword(t *testing.T) {
	const password = "s3cret-pw"
	env := map[string]string{"COLLECTORD_POSTGRES_URL": "postgres://u:" + password + "@db/x"}
	fs := newFlagSet()
	var help bytes.Buffer
	fs.SetOutput(&help)

	if _, err := Load(fs, []string{"-h"}, func(k string) string { return env[k] }); err == nil {
		t.Fatal("Load -h succeeded, want flag.ErrHelp")
	}
	if !strings.Contains(help.String(), "postgres-url") {
		t.Fatalf("help does not list --postgres-url:\n%s", help.String())
	}
	if strings.Contains(help.String(), password) {
		t.Errorf("help shows the password:\n%s", help.String())
	}
}
