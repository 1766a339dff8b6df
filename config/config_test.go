package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func noEnv(string) string { return "" }

func TestLoad_Defaults(t *testing.T) {
	cfg, err := Load(newFlagSet(), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ExtProc.Listen != "127.0.0.1:50051" {
		t.Errorf("extproc listen = %q", cfg.ExtProc.Listen)
	}
	if cfg.Capture.MaxCaptureBytes != 16<<20 {
		t.Errorf("max capture bytes = %d", cfg.Capture.MaxCaptureBytes)
	}
	if cfg.Identity.TrustedHeader != "" {
		t.Errorf("trusted header is on by default: %q", cfg.Identity.TrustedHeader)
	}
}

func TestLoad_Precedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	file := "data_dir: /from-file\napi:\n  listen: 127.0.0.1:1111\nadmin:\n  listen: 127.0.0.1:2222\ndrain_timeout: 3s\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"COLLECTORD_API_LISTEN": "127.0.0.1:3333", "COLLECTORD_DATA_DIR": "/from-env"}

	cfg, err := Load(newFlagSet(), []string{"--config", path, "--data-dir", "/from-flag"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from-flag" {
		t.Errorf("data dir = %q, want the flag's value", cfg.DataDir)
	}
	if cfg.API.Listen != "127.0.0.1:3333" {
		t.Errorf("api listen = %q, want the environment's value", cfg.API.Listen)
	}
	if cfg.Admin.Listen != "127.0.0.1:2222" {
		t.Errorf("admin listen = %q, want the file's value", cfg.Admin.Listen)
	}
	if time.Duration(cfg.DrainTimeout) != 3*time.Second {
		t.Errorf("drain timeout = %v", cfg.DrainTimeout)
	}
}

func TestLoad_InvalidNamesField(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		file  string
		field string
	}{
		{"bad listen", []string{"--api-listen", "nonsense"}, "", "api.listen"},
		{"proxy without upstream", []string{"--proxy-listen", "127.0.0.1:0"}, "", "proxy"},
		{"ftp upstream", []string{"--proxy-listen", "127.0.0.1:0", "--upstream", "ftp://x"}, "", "proxy"},
		{"batch over 1024", nil, "ingest:\n  batch_size: 2000\n", "ingest.batch_size"},
		{"remote batch over 128", nil, "ingest:\n  batch_size: 500\n  remote_base_url: http://127.0.0.1:9/\n", "ingest.batch_size"},
		{"negative batch", nil, "ingest:\n  batch_size: -1\n", "ingest.batch_size"},
		{"unknown field", nil, "extproc:\n  listn: x\n", "listn"},
		{"bad level", []string{"--log-level", "loud"}, "", "log.level"},
		{"bad duration", nil, "drain_timeout: soon\n", "soon"},
		{"empty unix path", []string{"--extproc-listen", "unix:"}, "", "extproc.listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				path := filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config=" + path}, args...)
			}
			_, err := Load(newFlagSet(), args, noEnv)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestLoad_UnixListen(t *testing.T) {
	cfg, err := Load(newFlagSet(), []string{"--extproc-listen", "unix:/tmp/x.sock"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ExtProc.Listen != "unix:/tmp/x.sock" {
		t.Errorf("listen = %q", cfg.ExtProc.Listen)
	}
}
