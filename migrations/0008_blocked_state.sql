-- A job waiting for its dependencies is `blocked`: in pgfleet.jobs, never claimable (the
-- claim indexes only hold available and retryable rows), not backlog, not lag.
-- A new enum value cannot be used in the transaction that adds it, so it has a migration
-- of its own; 0009 uses it.
ALTER TYPE pgfleet.job_state ADD VALUE IF NOT EXISTS 'blocked' BEFORE 'available';
