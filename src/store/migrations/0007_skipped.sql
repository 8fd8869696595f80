-- The families a snapshot left out on purpose (`[collect] skip`, and the families under
-- them): not read, not failed. Rules that judge the absence of a row consult it (through
-- `:unread`), since a skipped view's rows are only what earlier snapshots stored.
CREATE TABLE snapshot_skipped (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot (id),
    family      TEXT    NOT NULL,            -- the family's view name
    PRIMARY KEY (snapshot_id, family)
) WITHOUT ROWID;
