-- The job table, its fetch and staging indexes, and the trigger that releases unique keys.
CREATE TABLE jobsaga_jobs (
    id            BIGSERIAL PRIMARY KEY,
    state         TEXT NOT NULL DEFAULT 'available' CHECK (state IN (
                      'available', 'scheduled', 'executing', 'retryable',
                      'completed', 'discarded', 'cancelled')),
    queue         TEXT NOT NULL,
    worker        TEXT NOT NULL,
    args          JSONB NOT NULL DEFAULT '{}',
    meta          JSONB NOT NULL DEFAULT '{}',
    tags          JSONB NOT NULL DEFAULT '[]',
    errors        JSONB NOT NULL DEFAULT '[]',
    attempt       INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts  INTEGER NOT NULL DEFAULT 20 CHECK (max_attempts > 0),
    priority      SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    inserted_at   TIMESTAMPTZ NOT NULL,
    scheduled_at  TIMESTAMPTZ NOT NULL,
    attempted_at  TIMESTAMPTZ,
    attempted_by  TEXT,
    completed_at  TIMESTAMPTZ,
    discarded_at  TIMESTAMPTZ,
    cancelled_at  TIMESTAMPTZ,
    unique_key    TEXT,
    unique_states TEXT
);

-- Matches the fetch order exactly and holds only available rows, so a table full of
-- finished jobs costs the fetch nothing.
CREATE INDEX jobsaga_jobs_fetch_idx ON jobsaga_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
CREATE INDEX jobsaga_jobs_staging_idx ON jobsaga_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
CREATE INDEX jobsaga_jobs_state_idx ON jobsaga_jobs (state, queue);
CREATE UNIQUE INDEX jobsaga_jobs_unique_key_idx ON jobsaga_jobs (unique_key)
    WHERE unique_key IS NOT NULL;

-- A job stops blocking duplicates as soon as it leaves the states its unique spec names.
CREATE FUNCTION jobsaga_release_unique_key() RETURNS trigger AS $$
BEGIN
    IF NEW.unique_key IS NOT NULL
       AND position(',' || NEW.state || ',' IN coalesce(NEW.unique_states, '')) = 0 THEN
        NEW.unique_key := NULL;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobsaga_jobs_release_unique_key
    BEFORE INSERT OR UPDATE OF state ON jobsaga_jobs
    FOR EACH ROW EXECUTE FUNCTION jobsaga_release_unique_key();
