-- Nexus schema 8: GPU events (XID errors, throttling, health changes, GPUs that stopped reporting
-- and reappeared) and what detection needs to see a change exactly once (docs/fleet.md, "Events").

-- The last reading detection saw, per GPU and key ('xid', 'throttle', a health input, 'health'
-- for the derived state). A reading not newer than its key's row is ignored (a redelivery, a
-- late reading): the rows are locked (in key order) by the statement that moves them forward.
CREATE TABLE gpu_event_state (
  gpu_id  integer NOT NULL REFERENCES gpus (id),
  key     text NOT NULL,
  time    timestamptz NOT NULL,
  value   float8 NOT NULL,
  PRIMARY KEY (gpu_id, key)
);

CREATE TABLE gpu_events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  gpu_id      integer NOT NULL REFERENCES gpus (id),
  type        text NOT NULL CHECK (type IN ('xid', 'throttle', 'health', 'stopped', 'reappeared')),
  time        timestamptz NOT NULL,
  ended_at    timestamptz,
  severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
  code        integer,
  message     text NOT NULL,
  details     jsonb NOT NULL DEFAULT '{}',
  -- When it was stored (the gateway's poll reads a window of these, see docs/fleet.md).
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (gpu_id, type, time)
);
CREATE INDEX gpu_events_time ON gpu_events (time DESC, id DESC);
CREATE INDEX gpu_events_recorded ON gpu_events (recorded_at);

-- A GPU retired (docs/fleet.md, "Retired GPU"): when the job marked it, and the last reading then.
ALTER TABLE gpus ADD COLUMN retired_at timestamptz;
