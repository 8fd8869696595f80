-- 0015: the objects present now, indexed apart from the ones gone. Every family view and
-- every scope the writer stores looks up a family's (or a scope's) current objects; by the
-- unique key alone those lookups also step over every object the family ever had, so each
-- run's rules and writes slowed with the history (a year of hourly key churn: 70,000 gone
-- keys under 2,000 current ones, 13 times the work for the keys' view).
CREATE INDEX object_current ON object (family, project_id, parent_id) WHERE blob_id IS NOT NULL;
