package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testRemoteKey = "remote-key-7c1e44"

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()

	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

// loadWorkflows loads a config file that contains the given workflows section.
func loadWorkflows(t *testing.T, dir, section string) (Config, error) {
	t.Helper()

	path := writeFile(t, dir, "c.yaml", "workflows:\n"+section)
	return Load(newFlagSet(), []string{"--config", path}, noEnv)
}

func TestWorkflows_Default(t *testing.T) {
	cfg, err := Load(newFlagSet(), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}

	if n := len(cfg.Workflows.RemoteModels); n != 0 {
		t.Errorf("default remote models = %d, want none", n)
	}

	endpoints, err := cfg.Workflows.RemoteModelEndpoints()
	if err != nil {
		t.Fatalf("RemoteModelEndpoints: %v", err)
	}

	if len(endpoints) != 0 {
		t.Errorf("default endpoints = %v, want none", endpoints)
	}
}

func TestWorkflows_RemoteModels(t *testing.T) {
	dir := t.TempDir()
	visionKey := writeFile(t, dir, "vision.key", "  "+testRemoteKey+"\n")
	textKey := writeFile(t, dir, "text.key", "other-key")

	cfg, err := loadWorkflows(t, dir, `  remote_models:
    - name: vision
      base_url: http://127.0.0.1:9999
      key_file: `+visionKey+`
      timeout: 3s
    - name: text
      base_url: https://127.0.0.1:9998/prefix
      key_file: `+textKey+`
`)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	want := []RemoteModelConfig{
		{Name: "vision", BaseURL: "http://127.0.0.1:9999", KeyFile: visionKey, Timeout: Duration(3 * time.Second)},
		{Name: "text", BaseURL: "https://127.0.0.1:9998/prefix", KeyFile: textKey},
	}
	if len(cfg.Workflows.RemoteModels) != len(want) {
		t.Fatalf("remote models = %+v, want %+v", cfg.Workflows.RemoteModels, want)
	}
	for i := range want {
		if cfg.Workflows.RemoteModels[i] != want[i] {
			t.Errorf("remote model %d = %+v, want %+v", i, cfg.Workflows.RemoteModels[i], want[i])
		}
	}

	endpoints, err := cfg.Workflows.RemoteModelEndpoints()
	if err != nil {
		t.Fatalf("RemoteModelEndpoints: %v", err)
	}

	if len(endpoints) != 2 {
		t.Fatalf("endpoints = %v, want vision and text", endpoints)
	}

	vision := endpoints["vision"]
	if vision == nil || vision.BaseURL != "http://127.0.0.1:9999" || vision.Key != testRemoteKey || vision.Timeout != 3*time.Second {
		t.Errorf("vision endpoint = %+v, want its base URL, the trimmed key and 3s", vision)
	}

	text := endpoints["text"]
	if text == nil || text.Key != "other-key" || text.Timeout != 0 {
		t.Errorf("text endpoint = %+v, want key other-key and the default timeout", text)
	}
}

func TestWorkflows_InvalidNamesField(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "ok.key", testRemoteKey)
	empty := writeFile(t, dir, "empty.key", " \n")
	twoLines := writeFile(t, dir, "two.key", testRemoteKey+"\nsecond-line")

	entry := func(name, baseURL, keyFile, timeout string) string {
		text := "    - name: " + name + "\n      base_url: " + baseURL + "\n      key_file: " + keyFile + "\n"
		if timeout != "" {
			text += "      timeout: " + timeout + "\n"
		}
		return text
	}

	cases := []struct {
		name    string
		entries string
		field   string
	}{
		{"empty name", entry(`""`, "http://127.0.0.1:1", key, ""), "workflows.remote_models[0].name"},
		{"blank name", entry(`"  "`, "http://127.0.0.1:1", key, ""), "workflows.remote_models[0].name"},
		{"duplicate name", entry("vision", "http://127.0.0.1:1", key, "") + entry("vision", "http://127.0.0.1:2", key, ""), "workflows.remote_models[1].name"},
		{"ftp base url", entry("vision", "ftp://127.0.0.1:1", key, ""), "workflows.remote_models[0].base_url"},
		{"base url without host", entry("vision", "http://", key, ""), "workflows.remote_models[0].base_url"},
		{"missing base url", entry("vision", `""`, key, ""), "workflows.remote_models[0].base_url"},
		{"missing key file", entry("vision", "http://127.0.0.1:1", `""`, ""), "workflows.remote_models[0].key_file"},
		{"key file not found", entry("vision", "http://127.0.0.1:1", filepath.Join(dir, "absent.key"), ""), "workflows.remote_models[0].key_file"},
		{"key file is a directory", entry("vision", "http://127.0.0.1:1", dir, ""), "workflows.remote_models[0].key_file"},
		{"empty key file", entry("vision", "http://127.0.0.1:1", empty, ""), "workflows.remote_models[0].key_file"},
		{"key file with two lines", entry("vision", "http://127.0.0.1:1", twoLines, ""), "workflows.remote_models[0].key_file"},
		{"negative timeout", entry("vision", "http://127.0.0.1:1", key, "-1s"), "workflows.remote_models[0].timeout"},
		{"second entry invalid", entry("vision", "http://127.0.0.1:1", key, "") + entry("text", "127.0.0.1:2", key, ""), "workflows.remote_models[1].base_url"},
		{"unknown field", "    - name: vision\n      url: http://127.0.0.1:1\n", `unknown field "url"`},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWorkflows(t, t.TempDir(), "  remote_models:\n"+tc.entries)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}

			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}

			if strings.Contains(err.Error(), testRemoteKey) {
				t.Errorf("error %q contains the API key", err)
			}
		})
	}
}

func TestWorkflows_EndpointsKeyFileGone(t *testing.T) {
	// The key file is read again when the endpoints are built. A file removed
	// after validation is reported with its field and without its content.
	dir := t.TempDir()
	key := writeFile(t, dir, "vision.key", testRemoteKey)

	cfg := Default()
	cfg.Workflows.RemoteModels = []RemoteModelConfig{{Name: "vision", BaseURL: "http://127.0.0.1:1", KeyFile: key}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}

	_, err := cfg.Workflows.RemoteModelEndpoints()
	if err == nil || !strings.Contains(err.Error(), "workflows.remote_models[0].key_file") {
		t.Errorf("RemoteModelEndpoints error = %v, want one naming workflows.remote_models[0].key_file", err)
	}
}

func TestWorkflows_EndpointsRejectDuplicates(t *testing.T) {
	// RemoteModelEndpoints does not rely on Validate having run.
	dir := t.TempDir()
	key := writeFile(t, dir, "vision.key", testRemoteKey)

	workflows := WorkflowsConfig{RemoteModels: []RemoteModelConfig{
		{Name: "vision", BaseURL: "http://127.0.0.1:1", KeyFile: key},
		{Name: "vision", BaseURL: "http://127.0.0.1:2", KeyFile: key},
	}}

	_, err := workflows.RemoteModelEndpoints()
	if err == nil || !strings.Contains(err.Error(), "workflows.remote_models[1].name") {
		t.Errorf("RemoteModelEndpoints error = %v, want one naming workflows.remote_models[1].name", err)
	}
}
