package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRun_ServesPredicts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer

	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--user", "me2", "--app", "shop"}, &logs, func(a net.Addr) { addrs <- a })
	}()

	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("run ended before listening: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start listening within 10s")
	}

	url := "http://" + addr.String() + "/v2/users/me2/apps/shop/models/text-stats/outputs"
	res, err := http.Post(url, "application/json", strings.NewReader(`{"inputs":[{"data":{"text":{"raw":"hi"}}}]}`))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"short"`) {
		t.Errorf("response = %d %s, want 200 with the short concept", res.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop within 15s of cancel")
	}
}

func TestRun_RejectsArguments(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra"}} {
		var stderr bytes.Buffer
		if err := run(context.Background(), args, &stderr, nil); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
