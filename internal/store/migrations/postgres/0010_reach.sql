-- Searches confined to the caller's reach (internal/auth/reach.go,
-- internal/record/search.go). A clinician's search, include and type
-- history select records by patient_id among the patients they reach:
-- resources has resources_by_patient (0008) for that; the history lacked
-- one, so a type history of a few patients scanned every version of the
-- type. The reach of a role that sees every patient but those who refused
-- a purpose lists the refusals by purpose: consents were keyed by patient
-- only.
CREATE INDEX resource_history_by_patient ON resource_history (patient_id, type, last_updated) WHERE patient_id IS NOT NULL;
CREATE INDEX consents_by_purpose ON consents (purpose, decision, patient_id);
