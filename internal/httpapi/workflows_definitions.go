package httpapi

import (
	"net/http"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
)

// The workflow-definitions surface: the registered definitions.

// definitionJSON describes one registered definition, every version.
type definitionJSON struct {
	Name          string                  `json:"name"`
	NewestVersion int                     `json:"newest_version"`
	Versions      []definitionVersionJSON `json:"versions"`
}

type definitionVersionJSON struct {
	Version int        `json:"version"`
	Steps   []stepJSON `json:"steps"`
}

// stepJSON describes a step as far as code can be described: what kind it
// is, whether a condition decides if it runs, and its limits. Conditions
// and waits are Go functions of the run's input; their meaning is the
// definition's documentation.
type stepJSON struct {
	Name string `json:"name"`
	// Kind is "action" (does work, may call the outside world, retried) or
	// "wait" (a timer, a signal or a human task, computed when reached).
	Kind string `json:"kind"`
	// Conditional: the step runs only when its condition on the run's input
	// and earlier outputs holds; otherwise it is skipped.
	Conditional bool `json:"conditional"`
	// TimeoutSeconds bounds one attempt of an action step.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// MaxAttempts is an action step's attempts including the first.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Definitions are code, not patient data; whoever may list runs may
	// see what runs can be.
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: runType}}
	if _, err := s.authorize(r, p, a); err != nil {
		s.writeError(w, r, err)
		return
	}
	reg := s.opts.Engine.Registry()
	out := []definitionJSON{}
	for _, info := range reg.List() {
		dj := definitionJSON{Name: info.Name, Versions: []definitionVersionJSON{}}
		for _, v := range info.Versions {
			def, ok := reg.Get(info.Name, v)
			if !ok {
				continue
			}
			vj := definitionVersionJSON{Version: v, Steps: []stepJSON{}}
			for _, st := range def.Steps {
				sj := stepJSON{Name: st.Name, Kind: "wait", Conditional: st.When != nil}
				if st.Do != nil {
					sj.Kind = "action"
					sj.TimeoutSeconds = engine.DefaultStepTimeout.Seconds()
					if st.Timeout > 0 {
						sj.TimeoutSeconds = st.Timeout.Seconds()
					}
					sj.MaxAttempts = st.Retry.MaxAttempts
					if sj.MaxAttempts <= 0 {
						sj.MaxAttempts = engine.DefaultRetry.MaxAttempts
					}
				}
				vj.Steps = append(vj.Steps, sj)
			}
			dj.Versions = append(dj.Versions, vj)
			dj.NewestVersion = max(dj.NewestVersion, v)
		}
		out = append(out, dj)
	}
	writeJSON(w, "application/json", http.StatusOK, map[string]any{"definitions": out})
}
