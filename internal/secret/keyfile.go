package secret

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

// ParseKeys reads keys from the text of a key file or of the
// COLLECTORD_SECRET_KEY environment variable. Entries are separated by
// newlines or commas, and blank lines and lines starting with # are skipped.
// An entry is KEY or ID:KEY, where KEY is 32 bytes in hex (64 characters)
// or base64 (standard or URL alphabet, padded or not). An entry without an
// ID gets one derived from the key bytes. The first entry is the primary
// key. Errors name the entry by its position, never its text.
func ParseKeys(text string) ([]Key, error) {
	var keys []Key
	n := 0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, entry := range strings.Split(line, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			n++
			key, err := parseEntry(entry)
			if err != nil {
				return nil, fmt.Errorf("key entry %d: %w", n, err)
			}
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no key found: write one key per line, KEY or ID:KEY, with KEY 32 bytes in hex or base64")
	}
	return keys, nil
}

func parseEntry(entry string) (Key, error) {
	id, material, hasID := strings.Cut(entry, ":")
	if !hasID {
		id, material = "", entry
	}
	b, err := decodeKeyBytes(strings.TrimSpace(material))
	if err != nil {
		return Key{}, err
	}

	id = strings.TrimSpace(id)
	if !hasID {
		id = derivedKeyID(b)
	}
	if !validKeyID(id) {
		return Key{}, fmt.Errorf("key ID %q is invalid: use 1 to 64 characters from [A-Za-z0-9_.-]", id)
	}
	return Key{ID: id, Bytes: b}, nil
}

// decodeKeyBytes accepts 64 hex characters or any base64 form of 32 bytes.
func decodeKeyBytes(s string) ([]byte, error) {
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("the key is not %d bytes in hex or base64 (generate one with: openssl rand -hex 32)", KeySize)
}

// LoadKeyFile reads the keys of a key file in the format of ParseKeys.
func LoadKeyFile(path string) ([]Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	keys, err := ParseKeys(string(data))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return keys, nil
}

// CreateKeyFile writes a new random key to path with mode 0600 and returns
// it. It fails when path exists, so it never replaces a key that stored
// values depend on.
func CreateKeyFile(path string) (Key, error) {
	key := NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Key{}, fmt.Errorf("create key file: %w", err)
	}

	content := "# collectord data-encryption keys, one per line as ID:KEY (hex).\n" +
		"# The first key encrypts new values; the others only decrypt.\n" +
		key.ID + ":" + hex.EncodeToString(key.Bytes) + "\n"
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return Key{}, fmt.Errorf("write key file %s: %w", path, err)
	}
	return key, nil
}

// KeyringConfig names the sources of OpenKeyring's keys. At most one of File
// and Env may be set. When both are empty, DefaultFile is used.
type KeyringConfig struct {
	// File is a key file (the setting secrets.key_file).
	File string
	// Env is key material in the key file format, from the
	// COLLECTORD_SECRET_KEY environment variable.
	Env string
	// DefaultFile is the key file used when File and Env are empty.
	DefaultFile string
	// CreateDefault creates DefaultFile with a new key when it does not
	// exist. Only a single process that owns its store may do this: processes
	// that share a store must share the keys.
	CreateDefault bool
}

// OpenKeyring loads the keys that cfg names and returns their keyring. It
// logs the key IDs and where they came from, never a key, and warns when a
// key file can be read by other users.
func OpenKeyring(cfg KeyringConfig, logger *slog.Logger) (*Keyring, error) {
	keys, source, err := loadKeys(cfg, logger)
	if err != nil {
		return nil, err
	}
	kr, err := NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}

	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	logger.Info("loaded data-encryption keys", "source", source, "primary_key_id", kr.PrimaryID(), "key_ids", ids)
	return kr, nil
}

func loadKeys(cfg KeyringConfig, logger *slog.Logger) ([]Key, string, error) {
	switch {
	case cfg.File != "" && cfg.Env != "":
		return nil, "", errors.New("both secrets.key_file and COLLECTORD_SECRET_KEY are set: set only one")
	case cfg.Env != "":
		keys, err := ParseKeys(cfg.Env)
		if err != nil {
			return nil, "", fmt.Errorf("environment variable COLLECTORD_SECRET_KEY: %w", err)
		}
		return keys, "COLLECTORD_SECRET_KEY", nil
	case cfg.File != "":
		keys, err := loadFileWarnMode(cfg.File, logger)
		return keys, cfg.File, err
	case cfg.DefaultFile == "":
		return nil, "", errors.New("no data-encryption key: set secrets.key_file or COLLECTORD_SECRET_KEY")
	}

	keys, err := loadFileWarnMode(cfg.DefaultFile, logger)
	if !errors.Is(err, fs.ErrNotExist) || !cfg.CreateDefault {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("no data-encryption key: %s does not exist; set secrets.key_file or COLLECTORD_SECRET_KEY", cfg.DefaultFile)
		}
		return keys, cfg.DefaultFile, err
	}

	key, err := CreateKeyFile(cfg.DefaultFile)
	if err != nil {
		return nil, "", err
	}
	logger.Warn("generated a data-encryption key because none was configured; back up this file, "+
		"because stored post-inputs keys cannot be decrypted without it",
		"path", cfg.DefaultFile, "key_id", key.ID)
	return []Key{key}, cfg.DefaultFile, nil
}

func loadFileWarnMode(path string, logger *slog.Logger) ([]Key, error) {
	keys, err := LoadKeyFile(path)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		logger.Warn("the key file can be read by other users: restrict it with chmod 600",
			"path", path, "mode", info.Mode().Perm().String())
	}
	return keys, nil
}
