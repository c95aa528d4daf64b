package access

import (
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
)

// Caller is who acts, with what the audit entry of each decision needs. A
// person or a machine client has a Principal and is decided by the access
// policy. The system (the importer, a workflow step on behalf of a run) has
// no principal: it is named by System, and acts with the operator's
// authority over every type the policy serves.
type Caller struct {
	// Principal is the verified person or client; nil for the system.
	Principal *auth.Principal
	// System names the system actor when Principal is nil.
	System *System
	// RequestID ties the caller's entries together: the HTTP request id,
	// the import's run id, the workflow run's step.
	RequestID string
	// ClientAddr is the client's IP address, for callers over a network.
	ClientAddr string
	// Purpose is the purpose of use the person states ("" is the role's
	// default). A purpose already in the context (auth.WithPurpose) wins,
	// so a surface may state it either way.
	Purpose auth.Purpose
}

// System is the system acting on its own authority, as the audit log names
// it.
type System struct {
	// Actor is the audit entry's actor: "careflow-import",
	// "workflow-run:<run id>".
	Actor string
	// Role is the audit entry's role: "import", "workflow".
	Role string
	// Purpose is the purpose of use code the entries carry
	// (audit.PurposeOperations for an import).
	Purpose string
	// OnePatient bounds the system to the records of Patient: every record
	// it reads, lists or writes names that patient, and with Patient empty
	// it touches none. A workflow step acting for a run works in its run's
	// patient's record alone (WorkflowStep). Without it the system reaches
	// every record the policy serves (the importer).
	OnePatient bool
	Patient    string
}

// How the audit log names careflow import: the actor and role are the
// command, the purpose healthcare operations.
const (
	ImportActor   = "careflow-import"
	ImportRole    = "import"
	ImportPurpose = audit.PurposeOperations
)

// Importer is the caller of careflow import: one run, named by runID.
func Importer(runID string) Caller {
	return Caller{
		System:    &System{Actor: ImportActor, Role: ImportRole, Purpose: ImportPurpose},
		RequestID: "import-" + runID,
	}
}

// WorkflowRun is the caller of a workflow step acting as the system on
// behalf of a run: its entries name the run, so the log shows which run
// read or wrote what.
func WorkflowRun(runID, step string) Caller {
	return Caller{
		System:    &System{Actor: "workflow-run:" + runID, Role: "workflow", Purpose: audit.PurposeOperations},
		RequestID: runID + "/" + step,
	}
}

// WorkflowStep is the caller of a step of a run of patientID: the
// WorkflowRun caller bound to that patient's records (System.OnePatient),
// so that a step, whatever its definition asks, writes and reads nowhere
// else; a run of no patient (patientID "") touches no record.
func WorkflowStep(runID, step, patientID string) Caller {
	c := WorkflowRun(runID, step)
	c.System.OnePatient = true
	c.System.Patient = patientID
	return c
}

// Action names what a caller is about to do, for a decision and its audit
// entry.
type Action struct {
	Req auth.Request
	// AuditAction is the audit log's action; empty means Req.Action.
	AuditAction audit.Action
	ResourceID  string
}
