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
-- it computes (`usage_slices.peaks_at`); readers trust the slices merged and not marked since,
-- and read the others (the current slice, a slice a late reading marked, a slice computed before
-- this schema) from the minutes as before. A slice's highest reading only grows (readings are
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
