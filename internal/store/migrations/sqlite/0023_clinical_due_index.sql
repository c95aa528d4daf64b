-- internal/clinical: a list of workflows due in a range (GET /workflows
-- ?due_from=&due_to=). The index on due_at alone left each of the range's
-- workflows to be read from the table to learn its patient and its place
-- in the list, so the planner preferred walking every workflow of the
-- caller's patients instead (28 ms for a day's due work of a ward of 30
-- patients among 100,000 workflows). With the patient and the list's order
-- in the index, the range is read from the index alone, confined to the
-- caller's patients there, and only the page's rows are fetched (0.8 ms).
DROP INDEX clinical_workflows_due;
CREATE INDEX clinical_workflows_due ON clinical_workflows (due_at, patient_id, priority_rank, created_at, id);
