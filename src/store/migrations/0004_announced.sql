-- What the notifier last told people about each finding (written by the notifier only).
-- A run announces the difference between these and the finding's current status and
-- severity, so a change recorded by a run that did not notify (a plain `audit`, a partial
-- snapshot that withholds resolutions) is announced by the next run that does.
-- NULL = never announced.
ALTER TABLE finding ADD COLUMN announced_status TEXT
    CHECK (announced_status IN ('open', 'resolved', 'exempt'));
ALTER TABLE finding ADD COLUMN announced_severity TEXT
    CHECK (announced_severity IN ('info', 'low', 'medium', 'high', 'critical'));
