package secret_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collectord/collectord/internal/secret"
)

const plaintextKey = "cdk_post-inputs-key-that-must-never-be-stored-in-clear"

// fixedKey returns a key whose bytes are all b, so tests can name it.
func fixedKey(id string, b byte) secret.Key {
	return secret.Key{ID: id, Bytes: bytes.Repeat([]byte{b}, secret.KeySize)}
}

func requireKeyring(t *testing.T, keys ...secret.Key) *secret.Keyring {
	t.Helper()
	kr, err := secret.NewKeyring(keys...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func TestKeyring_RoundTrip(t *testing.T) {
	kr := requireKeyring(t, fixedKey("k1", 1))

	a := kr.Encrypt(plaintextKey, "collector a")
	b := kr.Encrypt(plaintextKey, "collector a")
	if !strings.HasPrefix(a, "enc:v1:k1:") {
		t.Errorf("encrypted value %q does not start with enc:v1:k1:", a)
	}
	if strings.Contains(a, plaintextKey) {
		t.Errorf("encrypted value contains the plaintext")
	}
	if a == b {
		t.Errorf("two encryptions of one plaintext are equal; the nonce must be random")
	}

	for _, v := range []string{a, b} {
		got, err := kr.Decrypt(v, "collector a")
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if got != plaintextKey {
			t.Errorf("Decrypt = %q, want the plaintext", got)
		}
	}
}

func TestKeyring_EmptyPlaintext(t *testing.T) {
	kr := requireKeyring(t, fixedKey("k1", 1))
	got, err := kr.Decrypt(kr.Encrypt("", "ctx"), "ctx")
	if err != nil || got != "" {
		t.Errorf("Decrypt(Encrypt(\"\")) = %q, %v; want \"\", nil", got, err)
	}
}

func TestKeyring_OlderKeyDecrypts(t *testing.T) {
	old := requireKeyring(t, fixedKey("old", 1))
	value := old.Encrypt(plaintextKey, "ctx")

	rotated := requireKeyring(t, fixedKey("new", 2), fixedKey("old", 1))
	if rotated.PrimaryID() != "new" {
		t.Errorf("PrimaryID = %q, want new", rotated.PrimaryID())
	}
	got, err := rotated.Decrypt(value, "ctx")
	if err != nil {
		t.Fatalf("Decrypt with the old key kept: %v", err)
	}
	if got != plaintextKey {
		t.Errorf("Decrypt = %q, want the plaintext", got)
	}
	if v := rotated.Encrypt("x", "ctx"); !strings.HasPrefix(v, "enc:v1:new:") {
		t.Errorf("new value %q is not under the primary key", v)
	}
}

func TestKeyring_DecryptErrors(t *testing.T) {
	kr := requireKeyring(t, fixedKey("k1", 1), fixedKey("k2", 2))
	value := kr.Encrypt(plaintextKey, "ctx")
	payload := strings.TrimPrefix(value, "enc:v1:k1:")

	sealed, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	sealed[len(sealed)-1] ^= 1
	flipped := "enc:v1:k1:" + base64.RawURLEncoding.EncodeToString(sealed)

	cases := []struct {
		name, value, context string
		want                 error
	}{
		{"other context", value, "another collector", secret.ErrDecrypt},
		{"flipped bit", flipped, "ctx", secret.ErrDecrypt},
		{"relabelled key ID", "enc:v1:k2:" + payload, "ctx", secret.ErrDecrypt},
		{"unknown key ID", "enc:v1:k9:" + payload, "ctx", secret.ErrUnknownKey},
		{"no prefix", plaintextKey, "ctx", secret.ErrMalformed},
		{"no key ID", "enc:v1:" + payload, "ctx", secret.ErrMalformed},
		{"not base64", "enc:v1:k1:!!!", "ctx", secret.ErrMalformed},
		{"too short", "enc:v1:k1:AAAA", "ctx", secret.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kr.Decrypt(tc.value, tc.context)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decrypt error = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), payload) || strings.Contains(err.Error(), plaintextKey) {
				t.Errorf("error %q quotes the value", err)
			}
		})
	}
}

func TestNewKeyring_Invalid(t *testing.T) {
	cases := []struct {
		name string
		keys []secret.Key
	}{
		{"no key", nil},
		{"short key", []secret.Key{{ID: "k1", Bytes: make([]byte, 16)}}},
		{"duplicate ID", []secret.Key{fixedKey("k1", 1), fixedKey("k1", 2)}},
		{"colon in ID", []secret.Key{fixedKey("k:1", 1)}},
		{"empty ID", []secret.Key{fixedKey("", 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := secret.NewKeyring(tc.keys...); err == nil {
				t.Errorf("NewKeyring accepted %v", tc.keys)
			}
		})
	}
}

func TestParseKeys_Formats(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, secret.KeySize)
	hexKey := hex.EncodeToString(raw)

	cases := []struct {
		name, text, wantID string
	}{
		{"hex", hexKey, ""},
		{"base64", base64.StdEncoding.EncodeToString(raw), ""},
		{"base64 raw", base64.RawStdEncoding.EncodeToString(raw), ""},
		{"base64url", base64.RawURLEncoding.EncodeToString(raw), ""},
		{"with ID", "2025-06:" + hexKey, "2025-06"},
		{"comments and spaces", "# keys\n\n  2025-06 : " + hexKey + "  \n", "2025-06"},
	}
	derived := ""
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := secret.ParseKeys(tc.text)
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if len(keys) != 1 {
				t.Fatalf("got %d keys, want 1", len(keys))
			}
			if !bytes.Equal(keys[0].Bytes, raw) {
				t.Errorf("key bytes differ from the input")
			}
			switch {
			case tc.wantID != "" && keys[0].ID != tc.wantID:
				t.Errorf("ID = %q, want %q", keys[0].ID, tc.wantID)
			case tc.wantID == "" && derived == "":
				derived = keys[0].ID
			case tc.wantID == "" && keys[0].ID != derived:
				t.Errorf("derived ID = %q, want the same as before, %q", keys[0].ID, derived)
			}
		})
	}
}

func TestParseKeys_OrderAndSeparators(t *testing.T) {
	text := "new:" + strings.Repeat("22", 32) + ",old:" + strings.Repeat("11", 32)
	keys, err := secret.ParseKeys(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "new" || keys[1].ID != "old" {
		t.Errorf("keys = %v, want [new old]", keys)
	}
}

func TestParseKeys_Invalid(t *testing.T) {
	secretText := strings.Repeat("ab", 16) // 16 bytes: too short
	for _, text := range []string{"", "# only a comment\n", secretText, "bad id!:" + strings.Repeat("ab", 32)} {
		_, err := secret.ParseKeys(text)
		if err == nil {
			t.Errorf("ParseKeys(%q) succeeded", text)
			continue
		}
		if strings.Contains(err.Error(), secretText) {
			t.Errorf("error %q quotes the key material", err)
		}
	}
}

func TestKey_NeverPrinted(t *testing.T) {
	k := fixedKey("k1", 0xcd)
	material := hex.EncodeToString(k.Bytes)

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("key", "key", k, "keys", []secret.Key{k})
	printed := []string{
		fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", []secret.Key{k}),
		logs.String(),
	}
	for _, p := range printed {
		if !strings.Contains(p, "k1") {
			t.Errorf("%q does not name the key ID", p)
		}
		if strings.Contains(p, material) || strings.Contains(p, "205 205") || strings.Contains(p, "0xcd") {
			t.Errorf("%q shows the key bytes", p)
		}
	}
}

func TestOpenKeyring_CreatesDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := secret.KeyringConfig{DefaultFile: path, CreateDefault: true}

	first, err := secret.OpenKeyring(cfg, logger)
	if err != nil {
		t.Fatalf("OpenKeyring: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the key file was not created: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}
	if !strings.Contains(logs.String(), "generated a data-encryption key") {
		t.Errorf("the log does not say a key was generated:\n%s", logs.String())
	}

	keys, err := secret.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), hex.EncodeToString(keys[0].Bytes)) {
		t.Errorf("the log contains the generated key")
	}

	value := first.Encrypt(plaintextKey, "ctx")
	logs.Reset()
	second, err := secret.OpenKeyring(cfg, logger)
	if err != nil {
		t.Fatalf("second OpenKeyring: %v", err)
	}
	if strings.Contains(logs.String(), "generated") {
		t.Errorf("the second start generated another key:\n%s", logs.String())
	}
	if got, err := second.Decrypt(value, "ctx"); err != nil || got != plaintextKey {
		t.Errorf("the reloaded keyring cannot decrypt: %q, %v", got, err)
	}
}

func TestOpenKeyring_Sources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("filekey:"+strings.Repeat("11", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	env := "envkey:" + strings.Repeat("22", 32)
	logger := slog.New(slog.DiscardHandler)

	cases := []struct {
		name        string
		cfg         secret.KeyringConfig
		wantPrimary string
	}{
		{"file", secret.KeyringConfig{File: file, DefaultFile: missing, CreateDefault: true}, "filekey"},
		{"env", secret.KeyringConfig{Env: env, DefaultFile: missing, CreateDefault: true}, "envkey"},
		{"both", secret.KeyringConfig{File: file, Env: env}, ""},
		{"default missing, no create", secret.KeyringConfig{DefaultFile: missing}, ""},
		{"nothing", secret.KeyringConfig{}, ""},
		{"file missing", secret.KeyringConfig{File: missing, DefaultFile: missing, CreateDefault: true}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := secret.OpenKeyring(tc.cfg, logger)
			if tc.wantPrimary == "" {
				if err == nil {
					t.Fatalf("OpenKeyring succeeded with primary %q, want an error", kr.PrimaryID())
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenKeyring: %v", err)
			}
			if kr.PrimaryID() != tc.wantPrimary {
				t.Errorf("PrimaryID = %q, want %q", kr.PrimaryID(), tc.wantPrimary)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("a configured key source created the default key file")
	}
}

func TestOpenKeyring_WarnsReadableFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte(strings.Repeat("11", 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if _, err := secret.OpenKeyring(secret.KeyringConfig{File: file}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "chmod 600") {
		t.Errorf("no warning about the file mode:\n%s", logs.String())
	}
}
