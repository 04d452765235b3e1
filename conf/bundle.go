package conf

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Bundle is the configuration as read from disk by the master: every source file by
// path. The master sends it to its workers over the control pipe so that master and
// workers parse the same bytes even if the files change on disk in between.
type Bundle struct {
	Prefix string            // directory relative paths are resolved against
	Path   string            // the main config file
	Files  map[string][]byte // path → content, the main file and every included file
}

// ReadBundle reads the main config file at path (relative to prefix) and the files it
// includes.
func ReadBundle(prefix, path string) (*Bundle, error) {
	prefix, err := filepath.Abs(prefix)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Prefix: prefix, Path: Resolve(prefix, path), Files: map[string][]byte{}}
	if err := b.read(b.Path); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Bundle) read(path string) error {
	if _, ok := b.Files[path]; ok {
		return nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, unwrapPathError(err))
	}
	b.Files[path] = src
	incs, es := scanIncludes(path, src, b.Prefix)
	if len(es) > 0 {
		// Parse errors are reported by Parse with their positions; stop following
		// includes of a file that does not parse.
		return nil
	}
	for _, inc := range incs {
		matches, err := filepath.Glob(inc)
		if err != nil {
			return fmt.Errorf("include %q: %w", inc, err)
		}
		sort.Strings(matches)
		for _, m := range matches {
			if err := b.read(m); err != nil {
				return err
			}
		}
	}
	return nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Encode serialises the bundle for the control pipe.
func (b *Bundle) Encode() ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeBundle is the inverse of Encode.
func DecodeBundle(data []byte) (*Bundle, error) {
	var b Bundle
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&b); err != nil {
		return nil, fmt.Errorf("decode config bundle: %w", err)
	}
	if b.Files == nil || b.Files[b.Path] == nil {
		return nil, fmt.Errorf("decode config bundle: main file %q missing", b.Path)
	}
	return &b, nil
}

// Resolve makes path absolute against prefix, as nginx resolves paths against its prefix.
func Resolve(prefix, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(prefix, path)
}
