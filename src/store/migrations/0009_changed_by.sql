-- 0009: who changed it. A finding opened, reopened or resolved by a change the audit log
-- explains keeps that explanation (the event's id, type, time and actor, as JSON): the
-- digest and the reports show who did it and from where. NULL when no event explains the
-- last such transition.
ALTER TABLE finding ADD COLUMN changed_by TEXT;
