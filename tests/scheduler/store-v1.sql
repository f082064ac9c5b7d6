-- A store written by rolechain 0.1.0 (schema version 1): one run, one record.
BEGIN TRANSACTION;
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    job TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT,
    role_arn TEXT,
    region TEXT,
    task TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    error_hop TEXT,
    started_at TEXT,
    duration_ms INTEGER,
    data TEXT
);
INSERT INTO "records" VALUES(1,'r1','inv','audit@222222222222','222222222222','arn:aws:iam::222222222222:role/audit','us-east-1','s3.list_buckets','ok',NULL,NULL,NULL,'2026-01-01T00:00:00.000Z',12,'{"buckets":[{"name":"b"}],"count":1}');
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    principal TEXT,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    targets INTEGER,
    targets_ok INTEGER,
    targets_failed INTEGER,
    records INTEGER,
    records_failed INTEGER,
    assume_calls INTEGER,
    planned_assume_calls INTEGER,
    retries INTEGER,
    elapsed_seconds REAL,
    plan TEXT
);
INSERT INTO "runs" VALUES('r1','inventory','ci','failed','2026-01-01T00:00:00Z','2026-01-01T00:00:01Z',2,1,1,2,1,3,2,0,0.5,'{"job": "inventory", "principal": "ci", "principal_kind": "user", "run_id": "r1", "regions": ["us-east-1"], "hops": [{"id": "ci>hub", "parent": null, "caller": "ci", "role": "hub", "role_arn": "arn:aws:iam::111111111111:role/hub", "account_id": "111111111111", "partition": "aws", "depth": 1, "chained": false, "duration_seconds": 3600, "duration_source": "requested", "session_name": "rolechain-test", "external_id": null, "mfa_serial": null, "source_identity": null, "policy": null, "policy_arns": [], "tags": {}, "transitive_tag_keys": [], "region": null, "location": null}, {"id": "ci>hub>audit@222222222222", "parent": "ci>hub", "caller": "hub", "role": "audit@222222222222", "role_arn": "arn:aws:iam::222222222222:role/audit", "account_id": "222222222222", "partition": "aws", "depth": 2, "chained": true, "duration_seconds": 3600, "duration_source": "requested", "session_name": "rolechain-test", "external_id": null, "mfa_serial": null, "source_identity": null, "policy": null, "policy_arns": [], "tags": {}, "transitive_tag_keys": [], "region": null, "location": null}], "targets": [{"name": "audit@222222222222", "role_arn": "arn:aws:iam::222222222222:role/audit", "account_id": "222222222222", "path": ["ci>hub", "ci>hub>audit@222222222222"], "lifetime_seconds": 3600, "needs_refresh": false, "regions": ["us-east-1"]}], "tasks": [{"id": "s3.list_buckets", "task": "s3.list_buckets", "params": {}, "regions": null, "timeout_seconds": null}], "notes": [], "discoveries": [], "concurrency": 8, "runtime_seconds": null, "settings": {"assume_rate": 1000.0, "retry_attempts": 4, "retry_initial_wait": 0.001, "retry_max_wait": 0.01}, "principal_source": "default", "principal_profile": null, "principal_arn": null, "region": "us-east-1", "format_version": 1, "assume_calls": 2}');
CREATE INDEX records_run ON records(run_id);
CREATE INDEX records_account ON records(account_id, task);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('records',1);
COMMIT;
PRAGMA user_version=1;
