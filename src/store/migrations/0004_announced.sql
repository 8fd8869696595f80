-- What the notifier last told people about each finding (written by the notifier only).
-- A run announces the difference between these and the finding's current status and
-- severity, so a change recorded by a run that did not notify (a plain `audit`, a partial
-- snapshot that withholds resolutions) is announced by the next run that does.
-- NULL = never announced.
ALTER TABLE finding ADD COLUMN announced_status TEXT
    CHECK (announced_status IN ('open', 'resolved', 'exempt'));
ALTER TABLE finding ADD COLUMN announced_severity TEXT
    CHECK (announced_severity IN ('info', 'low', 'medium', 'high', 'critical'));

-- A database from before this migration marked only `last_notified_at`, on each finding a
-- run announced (that notifier announced a run's own transitions, never a change recorded by
-- a run that did not notify): take what it last told as the finding's present state, so the
-- first notifying run after an upgrade does not announce them all again as new. A finding
-- never announced stays NULL and is announced once, as it would have been.
UPDATE finding SET announced_status = status, announced_severity = severity
WHERE last_notified_at IS NOT NULL;
