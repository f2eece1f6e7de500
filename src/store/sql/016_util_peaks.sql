-- Nexus schema 16: the idle report without a scan of each tenure (docs/fleet.md, "Idle GPUs").
--
-- A GPU is idle since the last minute of its pod's tenure in which its utilisation reached the
-- threshold. The report found that minute with an index scan back from the GPU's last reading,
-- which for an idle GPU went through its whole tenure: at 100,000 GPUs about 2 s a statement per
-- hour of tenure, so pods holding idle GPUs for a day or more (notebooks, reservations) took the
-- report, and the overview's idle count, past the 60 s statement timeout.
--
-- `util_peaks` holds, per GPU row and utilisation metric, the 10-minute slices whose highest
-- reading is above that of every later slice (the suffix maxima: a short staircase, as a slice
-- that reaches a level hides every earlier slice that did not pass it). The last slice that
-- reached a threshold is then the last of these at or above it, and the last busy minute is in
-- it: a probe of a few rows and ten minutes, whatever the tenure. The usage job merges each slice
-- it computes (`usage_slices.peaks_at`); readers trust the slices merged and not marked since
-- (every write marks its slices before its readings are stored), and read the others (the slice
-- being written, a slice a late reading marked, a slice computed before this schema) from the
-- minutes as before. A slice's highest reading only grows (readings are
-- never rewritten), so a slice hidden once stays hidden.
CREATE TABLE util_peaks (
  gpu_id     integer NOT NULL,
  metric_id  smallint NOT NULL,
  slice      timestamptz NOT NULL,
  max        double precision NOT NULL,
  PRIMARY KEY (gpu_id, metric_id, slice)
);

-- When the slice's maxima were last merged into `util_peaks`: null, or before `computed_at`, for
-- a slice computed before schema 16 or by an earlier release's collector during a rolling
-- upgrade (its job computes usage and leaves the peaks as they were). Readers trust only slices
-- merged since they were last computed; the usage job merges the others, newest first, once
-- nothing else is due.
ALTER TABLE usage_slices ADD COLUMN peaks_at timestamptz;

-- Collectors of releases before schema 15 mark hours in `usage_dirty`, and their own hourly job
-- deletes those marks once it has rewritten the hour: during a rolling upgrade it can take a mark
-- before this release's job turns it into slices, and the hour's slices (their usage and their
-- peaks) would miss the readings under it. Each mark is copied to the hour's six slices as it is
-- made.
CREATE FUNCTION nexus_usage_dirty_slices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO usage_slices AS u (slice, marked_at)
  SELECT NEW.hour + make_interval(mins => 10 * k), NEW.marked_at FROM generate_series(0, 5) AS k
  ON CONFLICT (slice) DO UPDATE SET marked_at = greatest(u.marked_at, excluded.marked_at);
  RETURN NULL;
END $$;

CREATE TRIGGER usage_dirty_slices AFTER INSERT OR UPDATE ON usage_dirty
  FOR EACH ROW EXECUTE FUNCTION nexus_usage_dirty_slices();

-- The marks made since schema 15 and not yet taken: their slices too. Readers and the usage job
-- then read marks from `usage_slices` alone.
INSERT INTO usage_slices AS u (slice, marked_at)
SELECT d.hour + make_interval(mins => 10 * k), d.marked_at FROM usage_dirty d CROSS JOIN generate_series(0, 5) AS k
ON CONFLICT (slice) DO UPDATE SET marked_at = greatest(u.marked_at, excluded.marked_at);
