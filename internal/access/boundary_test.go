package access

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The policy's decide functions (auth.Authorizer.Decide, DecideTx and
// DecideType) are called from internal/access alone: a surface that
// decided for itself would also have to confine, audit and redact for
// itself, which is the copy this package exists to remove. The check is
// by name, which is exact while the access policy is the only declarer of
// methods of these names; TestDecideDeclaredOnlyByAuth holds that.

// decideNames are the policy's decide functions.
var decideNames = []string{"Decide", "DecideTx", "DecideType"}

// mayDecide are the module's packages allowed to name the decide
// functions: the one that defines them and this one.
var mayDecide = []string{"internal/auth", "internal/access"}

// pendingMove lists functions (by package and enclosing function) let
// through while they move onto access.Guard during a refactor; empty when
// nothing outside access decides.
var pendingMove = []string{}

// decideUse is one naming of a decide function outside the allowed
// packages.
type decideUse struct {
	pos  string // file:line
	fn   string // the enclosing function
	name string // Decide or DecideType
}

// decideUses finds every selector naming a decide function in f: calls,
// and method values that could be called later.
func decideUses(fset *token.FileSet, f *ast.File) []decideUse {
	var uses []decideUse
	for _, d := range f.Decls {
		fn := ""
		if fd, ok := d.(*ast.FuncDecl); ok {
			fn = fd.Name.Name
		}
		ast.Inspect(d, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if ok && slices.Contains(decideNames, sel.Sel.Name) {
				p := fset.Position(sel.Sel.Pos())
				uses = append(uses, decideUse{pos: filepath.Base(p.Filename) + ":" + strconv.Itoa(p.Line), fn: fn, name: sel.Sel.Name})
			}
			return true
		})
	}
	return uses
}

// moduleFiles parses every non-test Go file of the module, by the package
// directory relative to the module root.
func moduleFiles(t *testing.T) (map[string][]*ast.File, *token.FileSet) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	fset := token.NewFileSet()
	files := map[string][]*ast.File{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		files[filepath.ToSlash(rel)] = append(files[filepath.ToSlash(rel)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files["internal/httpapi"]) == 0 || len(files["internal/auth"]) == 0 {
		t.Fatalf("the walk found no httpapi or auth files under %s", root)
	}
	return files, fset
}

// violations are the decide uses of pkg's files that the boundary forbids,
// but for the functions pending lists.
func violations(fset *token.FileSet, pkg string, files []*ast.File, pending []string) []decideUse {
	if slices.Contains(mayDecide, pkg) {
		return nil
	}
	var out []decideUse
	for _, f := range files {
		for _, u := range decideUses(fset, f) {
			if !slices.Contains(pending, pkg+"."+u.fn) {
				out = append(out, u)
			}
		}
	}
	return out
}

func TestOnlyAccessDecides(t *testing.T) {
	files, fset := moduleFiles(t)
	for pkg, fs := range files {
		for _, v := range violations(fset, pkg, fs, pendingMove) {
			t.Errorf("%s/%s (in %s) calls the policy's %s directly: go through an access.Guard (internal/access)", pkg, v.pos, v.fn, v.name)
		}
	}
}

// TestDecideDeclaredOnlyByAuth keeps the name check exact: if another type
// declares a method named like a decide function, the boundary test must
// learn to tell them apart (by type) before it can go on by name.
func TestDecideDeclaredOnlyByAuth(t *testing.T) {
	files, _ := moduleFiles(t)
	for pkg, fs := range files {
		for _, f := range fs {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if ok && fd.Recv != nil && slices.Contains(decideNames, fd.Name.Name) && pkg != "internal/auth" {
					t.Errorf("%s declares a method %s: the boundary test checks by name and would take it for the policy's", pkg, fd.Name.Name)
				}
			}
		}
	}
}

// TestBoundaryCatches shows the check fails on what it is there to catch,
// over planted sources: a handler deciding for itself, a method value kept
// for later, and the same call inside the allowed packages.
func TestBoundaryCatches(t *testing.T) {
	cases := []struct {
		name string
		pkg  string
		src  string
		want int
	}{
		{"handler decides", "internal/httpapi", `package httpapi
func (s *Server) h(r *http.Request, p *auth.Principal) { d := s.opts.Access.Authorizer.Decide(r.Context(), p, req); _ = d }`, 1},
		{"type question", "internal/rcm", `package rcm
func f(a *auth.Authorizer) { a.DecideType(ctx, p, req) }`, 1},
		{"method value", "cmd/careflow", `package main
var decide = authz.Decide`, 1},
		{"through the guard", "internal/httpapi", `package httpapi
func (s *Server) h(r *http.Request, p *auth.Principal) { s.accessFor(r, p).Authorize(r.Context(), a) }`, 0},
		{"the policy itself", "internal/auth", `package auth
func (a *Authorizer) x() { a.Decide(ctx, p, req) }`, 0},
		{"this package", "internal/access", `package access
func (g *Guard) x() { g.svc.Authorizer.Decide(ctx, p, req) }`, 0},
		{"a pending move", "internal/httpapi", `package httpapi
func (s *Server) mayRead() bool { return s.opts.Access.Authorizer.Decide(ctx, p, req).Allowed }`, 0},
		{"a pending name in another package", "internal/engine", `package engine
func mayRead() bool { return authz.Decide(ctx, p, req).Allowed }`, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "planted.go", c.src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := violations(fset, c.pkg, []*ast.File{f}, []string{"internal/httpapi.mayRead"}); len(got) != c.want {
				t.Errorf("violations = %v, want %d", got, c.want)
			}
		})
	}
}

// TestAccessImports holds access to its row of docs/ARCHITECTURE.md's
// package table: it stands on the policy, the audit log, the record's
// interfaces, the store and errs, and on nothing that stands on it
// (httpapi, cmd, engine), so every surface can use it.
func TestAccessImports(t *testing.T) {
	const module = "github.com/careflow/careflow/"
	allowed := []string{"internal/auth", "internal/audit", "internal/record", "internal/store", "internal/errs"}
	files, _ := moduleFiles(t)
	for _, f := range files["internal/access"] {
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if rest, ok := strings.CutPrefix(path, module); ok && !slices.Contains(allowed, rest) {
				t.Errorf("internal/access imports %s; docs/ARCHITECTURE.md allows %v", rest, allowed)
			}
		}
	}
}
