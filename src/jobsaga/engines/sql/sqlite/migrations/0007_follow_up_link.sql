-- Follow-up jobs name the saga run that enqueued them (meta.enqueued_by_run), and
-- `jobsaga runs show` lists them by it. Partial: only follow-up jobs are in it, so the jobs
-- table's other rows cost it nothing, and the lookup does not scan a table of a million jobs.
-- The filter is a text search, not json_extract: an index expression runs on every write,
-- and json_extract raises on a row whose meta is not valid JSON, which would make that one
-- bad row unwritable (its outcome could never be recorded). The CASE keeps the extraction
-- off invalid JSON for the same reason.
CREATE INDEX jobsaga_jobs_enqueued_by_run_idx
    ON jobsaga_jobs (CASE WHEN json_valid(meta) THEN json_extract(meta, '$.enqueued_by_run') END)
    WHERE instr(meta, '"enqueued_by_run"') > 0;
