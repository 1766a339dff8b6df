package api

import "testing"

func TestWithoutInvalidValue(t *testing.T) {
	cases := []struct{ in, want string }{
		{"proto: syntax error (line 1:101): invalid value secret-123",
			"proto: syntax error (line 1:101): invalid value"},
		{"proto: (line 1:43): invalid value for float field preQueueRandomSample: \"secret-123\"",
			"proto: (line 1:43): invalid value for float field preQueueRandomSample"},
		{"proto:\u00a0(line 1:18): unknown field \"colectors\"",
			"proto: (line 1:18): unknown field \"colectors\""},
	}
	for _, tc := range cases {
		if got := withoutInvalidValue(tc.in); got != tc.want {
			t.Errorf("withoutInvalidValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
