-- 0013: while a finding is exempt, the terms of the exemption in force (JSON: `expires`,
-- `owner`, `reason`), so that reports can say until when and why, and a change of date or
-- owner is recorded as a new `exempted` event. NULL otherwise, and for findings exempted
-- before this version until their next evaluation.
ALTER TABLE finding ADD COLUMN exemption TEXT;
