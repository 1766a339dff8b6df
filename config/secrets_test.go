package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestLoad_SecretKeyFromEnvOnly(t *testing.T) {
	const material = "k1:1111111111111111111111111111111111111111111111111111111111111111"
	env := map[string]string{EnvSecretKey: material}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	cfg, err := Load(fs, nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Secrets.Key) != material {
		t.Errorf("Secrets.Key was not read from %s", EnvSecretKey)
	}
	if fs.Lookup("secret-key") != nil {
		t.Errorf("a flag takes key material; it would show in the process list")
	}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", cfg)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", cfg)
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, printed := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"json": string(data), "slog": logs.String(),
	} {
		if strings.Contains(printed, "1111111111") {
			t.Errorf("%s of the config shows the key material", name)
		}
	}
}

func TestLoad_SecretKeyAndFileConflict(t *testing.T) {
	env := map[string]string{EnvSecretKey: "x", "COLLECTORD_SECRET_KEY_FILE": "/etc/collectord/keys"}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, err := Load(fs, nil, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "secrets.key_file") {
		t.Errorf("Load error = %v, want one naming secrets.key_file", err)
	}
}
