package auth

import (
	"fmt"
	"slices"
	"sort"
)

// WorkflowTask is the policy's resource name for the workflow engine's
// human tasks (list, read, claim, complete). It is decided against the
// patient of the task's run, like WorkflowRun, and is apart from the FHIR
// Task resource: a grant on one is no grant on the other.
const WorkflowTask = "WorkflowTask"

// PolicyVersion is the policy document format this build reads.
//
// Version 1 named both the FHIR Task resource and the engine's human tasks
// "Task", so a rule meant for one granted the other. Version 2 names the
// engine's tasks WorkflowTask and leaves Task to FHIR. A version 1 document
// is still read when it names neither (its meaning did not change), and is
// refused when it names Task, because no loader can tell which of the two
// things its author meant: the operator says it by granting WorkflowTask
// for the engine's tasks, Task for FHIR Task records, and setting version 2.
const PolicyVersion = 2

func checkVersion(doc *policyDoc) error {
	switch doc.Version {
	case PolicyVersion:
		return nil
	case 1:
		// Task is looked for first, in every role, so the message names
		// the ambiguity rather than whichever rule the map gave first.
		for _, name := range []string{"Task", WorkflowTask} {
			if role, i, ok := ruleNaming(doc, name); ok {
				if name == "Task" {
					return fmt.Errorf("roles.%s.rules[%d]: a version 1 policy's `Task` meant both FHIR Task records and the workflow engine's human tasks; grant `WorkflowTask` for the engine's tasks and `Task` for FHIR Task records only, and set `version` to %d", role, i, PolicyVersion)
				}
				return fmt.Errorf("roles.%s.rules[%d]: WorkflowTask needs `version` %d", role, i, PolicyVersion)
			}
		}
		return nil
	default:
		return fmt.Errorf("version must be %d, not %d", PolicyVersion, doc.Version)
	}
}

// ruleNaming finds the first rule, roles in name order, that names type t.
func ruleNaming(doc *policyDoc, t string) (string, int, bool) {
	names := make([]string, 0, len(doc.Roles))
	for name := range doc.Roles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for i, r := range doc.Roles[name].Rules {
			if slices.Contains(r.Resources, t) {
				return name, i, true
			}
		}
	}
	return "", 0, false
}
