// Package clinical holds the clinical workflow definitions the engine runs:
// so far the discharge sign-off (discharge.signoff). Register puts them on
// the engine's registry; serve calls it with the rest of its wiring.
//
// Invariants:
//   - A definition here holds the clinical rule (who decides, by when,
//     what the outcome is) and nothing of the engine's mechanics: it is
//     built only from engine.Definition, Step, TaskSpec and RecordInput.
//   - Every record a run names in its input is declared as a RecordInput,
//     so the engine confirms, before the run starts, that the record exists
//     and is the run's patient's; a definition never trusts a reference the
//     caller typed.
//   - A human decision is a task for a role of the patient's care team, and
//     escalation widens the task to the same role's whole list: a decision
//     stays with the role the definition names.
//   - Input is decoded strictly (unknown members refused) and error
//     messages name the field, never echo the value: inputs may carry PHI.
//
// Arrows: clinical imports engine and errs; engine never imports clinical.
package clinical
