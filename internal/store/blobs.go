package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// blobDir stores byte strings in files named by their hex SHA-256, spread
// over 256 subdirectories named by the first two hex digits. Equal content is
// stored once.
type blobDir struct {
	path string
}

// Put stores data and returns its hex SHA-256. The file appears complete or
// not at all: it is written to a temporary file, synced, then renamed, and the
// directory is synced so the rename survives a crash.
func (b blobDir) Put(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	name := hex.EncodeToString(sum[:])
	final := b.file(name)

	// Equal content under the same name is already complete, because files
	// only ever appear by rename.
	if _, err := os.Stat(final); err == nil {
		return name, nil
	}

	shard := filepath.Dir(final)
	if err := os.MkdirAll(shard, 0o750); err != nil {
		return "", fmt.Errorf("store blob %s: %w", name, err)
	}
	if err := writeFileAtomic(shard, final, data); err != nil {
		return "", fmt.Errorf("store blob %s: %w", name, err)
	}
	return name, nil
}

// Get returns the content stored under a hex SHA-256 name.
func (b blobDir) Get(name string) ([]byte, error) {
	if !validBlobName(name) {
		return nil, fmt.Errorf("read blob: invalid name %q", name)
	}

	data, err := os.ReadFile(b.file(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read blob %s: file missing from %s", name, b.path)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", name, err)
	}
	return data, nil
}

func (b blobDir) file(name string) string {
	return filepath.Join(b.path, name[:2], name)
}

func writeFileAtomic(dir, final string, data []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	// Removing the temporary file after a successful rename fails harmlessly.
	defer os.Remove(tmp.Name())

	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// validBlobName reports whether name is a lowercase hex SHA-256, so that a
// damaged row can never name a path outside the blob directory.
func validBlobName(name string) bool {
	if len(name) != sha256.Size*2 {
		return false
	}
	for _, r := range name {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
