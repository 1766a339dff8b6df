package ingest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestEmbedded_BindsNoPort(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	srv := env.embedded.srv
	if addr := srv.Addr(); addr != nil {
		t.Errorf("client listener = %v, want none", addr)
	}
	if addr := srv.MonitorAddr(); addr != nil {
		t.Errorf("monitor listener = %v, want none", addr)
	}
	if addr := srv.ClusterAddr(); addr != nil {
		t.Errorf("cluster listener = %v, want none", addr)
	}
	if !env.embedded.Conn().IsConnected() {
		t.Errorf("in-process connection is not connected")
	}
}

func TestEmbedded_RequiresDir(t *testing.T) {
	_, err := OpenEmbedded(EmbeddedConfig{})
	if err == nil || !strings.Contains(err.Error(), "Dir is required") {
		t.Fatalf("OpenEmbedded without Dir: err = %v, want a message naming Dir", err)
	}
}

func TestEmbedded_CloseEndsConnection(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	env.close(t)

	if !env.embedded.Conn().IsClosed() {
		t.Errorf("connection still open after Close")
	}
	if env.embedded.srv.Running() {
		t.Errorf("server still running after Close")
	}
}

func TestConnect_UnreachableMessage(t *testing.T) {
	// Port 1 on loopback is reserved and nothing listens there.
	_, err := Connect(ExternalConfig{URL: "nats://user:secret@127.0.0.1:1", ConnectTimeout: time.Second})
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1:1") || !strings.Contains(msg, "reachable") {
		t.Errorf("error %q should name the address and say to check it is reachable", msg)
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("error %q leaks the URL password", msg)
	}
}

func TestQueue_RejectsInvalidPrefix(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	_, err := OpenQueue(context.Background(), env.embedded.Conn(), QueueConfig{Prefix: "bad.prefix"})
	if err == nil || !strings.Contains(err.Error(), "bad.prefix") {
		t.Fatalf("OpenQueue with a dotted prefix: err = %v, want it rejected by name", err)
	}
}

func TestEmbedded_SyncSettings(t *testing.T) {
	cases := []struct {
		cfg          EmbeddedConfig
		wantAlways   bool
		wantInterval time.Duration
	}{
		{cfg: EmbeddedConfig{}, wantInterval: 2 * time.Minute},
		{cfg: EmbeddedConfig{SyncInterval: 5 * time.Second}, wantInterval: 5 * time.Second},
		{cfg: EmbeddedConfig{SyncAlways: true}, wantAlways: true},
	}
	for _, tc := range cases {
		tc.cfg.Dir = t.TempDir()
		e, err := OpenEmbedded(tc.cfg)
		if err != nil {
			t.Fatalf("OpenEmbedded: %v", err)
		}
		js := e.srv.JetStreamConfig()
		if js.SyncAlways != tc.wantAlways {
			t.Errorf("SyncAlways = %v, want %v", js.SyncAlways, tc.wantAlways)
		}
		if !tc.wantAlways && js.SyncInterval != tc.wantInterval {
			t.Errorf("SyncInterval = %s, want %s", js.SyncInterval, tc.wantInterval)
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}
