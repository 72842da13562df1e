-- Users and jobs live in D1: they are looked up by id, written rarely, and do
-- not need the per-key serialisation a Durable Object gives (quota counters,
-- idempotency records and refresh-token rotation live in Durable Objects).
CREATE TABLE IF NOT EXISTS users (
  tenant     TEXT NOT NULL,
  id         TEXT NOT NULL,
  anonymous  INTEGER NOT NULL DEFAULT 1,
  device_id  TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (tenant, id)
);

CREATE TABLE IF NOT EXISTS jobs (
  tenant     TEXT NOT NULL,
  id         TEXT NOT NULL,
  user_id    TEXT NOT NULL,
  kind       TEXT NOT NULL,
  input      TEXT NOT NULL,
  status     TEXT NOT NULL,
  result     TEXT,
  error      TEXT,
  attempts   INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (tenant, user_id, created_at);
