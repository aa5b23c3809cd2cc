-- The job table, its fetch and staging indexes, and the trigger that releases unique keys.
-- Times are REAL unix seconds (UTC); JSON columns are TEXT holding JSON.
CREATE TABLE jobsaga_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT NOT NULL DEFAULT 'available' CHECK (state IN (
                      'available', 'scheduled', 'executing', 'retryable',
                      'completed', 'discarded', 'cancelled')),
    queue         TEXT NOT NULL,
    worker        TEXT NOT NULL,
    args          TEXT NOT NULL DEFAULT '{}',
    meta          TEXT NOT NULL DEFAULT '{}',
    tags          TEXT NOT NULL DEFAULT '[]',
    errors        TEXT NOT NULL DEFAULT '[]',
    attempt       INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts  INTEGER NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    inserted_at   REAL NOT NULL,
    scheduled_at  REAL NOT NULL,
    attempted_at  REAL,
    attempted_by  TEXT,
    completed_at  REAL,
    discarded_at  REAL,
    cancelled_at  REAL,
    unique_key    TEXT,
    unique_states TEXT
);

CREATE INDEX jobsaga_jobs_fetch_idx ON jobsaga_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
CREATE INDEX jobsaga_jobs_staging_idx ON jobsaga_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
CREATE INDEX jobsaga_jobs_state_idx ON jobsaga_jobs (state, queue);
CREATE UNIQUE INDEX jobsaga_jobs_unique_key_idx ON jobsaga_jobs (unique_key)
    WHERE unique_key IS NOT NULL;

-- A job stops blocking duplicates as soon as it leaves the states its unique spec names.
CREATE TRIGGER jobsaga_jobs_release_unique_key
    AFTER UPDATE OF state ON jobsaga_jobs
    FOR EACH ROW
    WHEN NEW.unique_key IS NOT NULL
         AND instr(coalesce(NEW.unique_states, ''), ',' || NEW.state || ',') = 0
BEGIN
    UPDATE jobsaga_jobs SET unique_key = NULL WHERE id = NEW.id;
END;
