package ingest

import (
	"strings"
	"testing"
)

func TestSubjectToken_Safe(t *testing.T) {
	ids := []string{"", "plain", "with.dot", "star*", "gt>", "space here", "tab\t", "ünïcode", "~tilde", "a/b", "AbC-09_x"}
	seen := map[string]string{}
	for _, id := range ids {
		tok := SubjectToken(id)
		if tok == "" {
			t.Errorf("SubjectToken(%q) is empty", id)
		}
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Errorf("SubjectToken(%q) = %q contains a character not allowed in a subject token", id, tok)
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("SubjectToken(%q) = SubjectToken(%q) = %q", id, other, tok)
		}
		seen[tok] = id
	}
	if got := SubjectToken("AbC-09_x"); got != "AbC-09_x" {
		t.Errorf("SubjectToken of a plain ID = %q, want it unchanged", got)
	}
}

func TestQueue_SubjectEncodesIDs(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{Prefix: "test"})
	defer env.close(t)

	if got, want := env.queue.Subject("user", "app"), "test.captures.user.app"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	got := env.queue.Subject("user.name", "app*")
	if n := strings.Count(got, "."); n != 3 {
		t.Errorf("Subject(%q, %q) = %q has %d dots, want 3", "user.name", "app*", got, n)
	}
	if got, want := env.queue.StreamName(), "TEST_CAPTURES"; got != want {
		t.Errorf("StreamName = %q, want %q", got, want)
	}
	if got, want := env.queue.DeadLetterStreamName(), "TEST_DEADLETTER"; got != want {
		t.Errorf("DeadLetterStreamName = %q, want %q", got, want)
	}
}
