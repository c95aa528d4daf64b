package main

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// docs/ARCHITECTURE.md's package table says, for each internal package,
// which internal packages it imports. The table is the map a reader plans
// a change by, so it must be the code's: every package that holds Go code
// has a row, its "may import" cell names exactly the internal packages its
// non-test files import (paths under internal/, "—" for none), and a row
// of a package not built yet says so in its "holds" cell.
func TestArchitectureImportTable(t *testing.T) {
	root := filepath.Join("..", "..")
	const module = "github.com/careflow/careflow/"
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := architectureRows(string(doc))
	if len(rows) == 0 {
		t.Fatal("docs/ARCHITECTURE.md has no package table")
	}

	built := map[string]bool{}
	err = filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "testdata" {
			return filepath.SkipDir
		}
		pkg, err := build.Default.ImportDir(path, 0)
		if err != nil {
			var none *build.NoGoError
			if errors.As(err, &none) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(root, "internal"), path)
		name := filepath.ToSlash(rel)
		built[name] = true
		var imports []string
		for _, imp := range pkg.Imports {
			if rest, ok := strings.CutPrefix(imp, module+"internal/"); ok {
				imports = append(imports, rest)
			}
		}
		slices.Sort(imports)
		row, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("internal/%s has no row in docs/ARCHITECTURE.md's package table; it imports %v", name, imports)
		case row.notBuilt:
			t.Errorf("internal/%s is built, but its row says it is not built yet", name)
		case !slices.Equal(row.imports, imports):
			t.Errorf("internal/%s imports %v; its row in docs/ARCHITECTURE.md says %v", name, imports, row.imports)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, row := range rows {
		if !built[name] && !row.notBuilt {
			t.Errorf("docs/ARCHITECTURE.md has a row for internal/%s, which holds no Go code; mark it not built yet or drop it", name)
		}
	}
}

type architectureRow struct {
	imports  []string
	notBuilt bool
}

// architectureRows reads the rows "| `internal/x` | holds | a, b |" of
// the package table, by package path under internal/.
func architectureRows(doc string) map[string]architectureRow {
	rows := map[string]architectureRow{}
	for _, line := range strings.Split(doc, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 3 {
			continue
		}
		name, ok := strings.CutPrefix(strings.Trim(strings.TrimSpace(cells[0]), "`"), "internal/")
		if !ok {
			continue
		}
		var r architectureRow
		r.notBuilt = strings.Contains(cells[1], "not built yet")
		for _, imp := range strings.Split(cells[2], ",") {
			if imp = strings.Trim(strings.TrimSpace(imp), "`"); imp != "" && imp != "—" {
				r.imports = append(r.imports, imp)
			}
		}
		slices.Sort(r.imports)
		rows[name] = r
	}
	return rows
}
