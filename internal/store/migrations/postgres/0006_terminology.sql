-- internal/terminology: code systems, their releases and their codes.
--
-- A release is one loaded version of a code system (ICD-10-CM "2026" from the
-- CMS order file, a HCPCS or CPT code list) with the dates of service it is
-- valid for, both ends inclusive, stored as midnight UTC; NULL leaves that
-- end open. Loading a release again replaces its codes in one transaction,
-- which is why (system, version) is unique. No PHI lives here: these are
-- public code sets (the Egyptian national ID is checked, never stored).
CREATE TABLE terminology_systems (
	uri  TEXT PRIMARY KEY,
	name TEXT NOT NULL
);

CREATE TABLE terminology_releases (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	system     TEXT NOT NULL REFERENCES terminology_systems (uri),
	version    TEXT NOT NULL CHECK (version <> ''),
	valid_from TIMESTAMPTZ,
	valid_to   TIMESTAMPTZ,
	source     TEXT NOT NULL CHECK (source IN ('cms-order-file', 'code-list')),
	code_count BIGINT NOT NULL CHECK (code_count >= 0),
	loaded_at  TIMESTAMPTZ NOT NULL,
	UNIQUE (system, version),
	CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_to >= valid_from)
);

-- code is the storage form (ICD-10-CM without its dot). display is the
-- preferred display (the long description for ICD-10-CM), possibly empty for
-- a CPT list loaded without the AMA's descriptions. billable is false only
-- for ICD-10-CM header codes. The primary key serves look-ups by code: the
-- planner probes it once per release of the system, and a system has few.
CREATE TABLE terminology_codes (
	release_id    BIGINT NOT NULL REFERENCES terminology_releases (id) ON DELETE CASCADE,
	code          TEXT NOT NULL,
	display       TEXT NOT NULL,
	short_display TEXT NOT NULL,
	billable      BOOLEAN NOT NULL,
	PRIMARY KEY (release_id, code)
);
