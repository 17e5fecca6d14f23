-- Membership that notices a crash at once: a worker records the backend pid of its LISTEN
-- connection. A SIGKILLed process's connections close with it, so a worker whose listener
-- backend is gone from pg_stat_activity is treated as dead without waiting for its
-- registration to expire. NULL (no listener yet, or a poll-only worker) falls back to
-- the expiry alone.
ALTER TABLE pgfleet.workers ADD COLUMN listener_pid integer;
