-- 0012: when each snapshot's findings were last evaluated (Unix seconds; NULL: never, as
-- for a `snapshot` run). A finding's transition at one evaluation can come from any change
-- since the last evaluation before it that could see that finding, so "who changed it"
-- looks for its event from there, not from the previous snapshot, which may never have
-- been evaluated. Earlier versions did not record it; their snapshots that did not fail
-- are taken as evaluated when they finished, which is what those versions assumed.
ALTER TABLE snapshot ADD COLUMN evaluated_at INTEGER;
UPDATE snapshot SET evaluated_at = finished_at WHERE status IN ('complete', 'partial');
