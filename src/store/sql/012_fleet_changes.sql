-- Nexus schema 12: change markers on the fleet's dimensions, so that a gateway keeps its fleet
-- directory (src/store/fleet-directory.ts) current by reading what changed instead of reloading
-- every GPU. `change_xid` is the id of the transaction that inserted the row, or last changed what
-- the directory holds of it (retired_at, uuid, model, device, mig_profile, first_seen): NOT the
-- frequent last_seen touches. A reader asks for `change_xid >= $watermark`, the watermark being
-- `pg_snapshot_xmin(pg_current_snapshot())` taken by the previous read's statement: a transaction
-- still in progress then has an id at least that, so a row it commits later (even after a
-- transaction with a larger id) is read the next time. Rows written before this migration hold
-- 0: a full load reads them.
ALTER TABLE clusters ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE hosts ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE gpus ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE gpu_workloads ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';

CREATE INDEX clusters_change_xid ON clusters (change_xid);
CREATE INDEX hosts_change_xid ON hosts (change_xid);
CREATE INDEX gpus_change_xid ON gpus (change_xid);
CREATE INDEX gpu_workloads_change_xid ON gpu_workloads (change_xid);

CREATE FUNCTION nexus_mark_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.change_xid := pg_current_xact_id();
  RETURN NEW;
END
$$;

CREATE TRIGGER clusters_change BEFORE INSERT ON clusters
  FOR EACH ROW EXECUTE FUNCTION nexus_mark_change();
CREATE TRIGGER clusters_change_update BEFORE UPDATE ON clusters
  FOR EACH ROW WHEN (OLD.first_seen IS DISTINCT FROM NEW.first_seen)
  EXECUTE FUNCTION nexus_mark_change();

CREATE TRIGGER hosts_change BEFORE INSERT ON hosts
  FOR EACH ROW EXECUTE FUNCTION nexus_mark_change();
CREATE TRIGGER hosts_change_update BEFORE UPDATE ON hosts
  FOR EACH ROW WHEN (OLD.first_seen IS DISTINCT FROM NEW.first_seen)
  EXECUTE FUNCTION nexus_mark_change();

CREATE TRIGGER gpus_change BEFORE INSERT ON gpus
  FOR EACH ROW EXECUTE FUNCTION nexus_mark_change();
CREATE TRIGGER gpus_change_update BEFORE UPDATE ON gpus
  FOR EACH ROW WHEN (OLD.retired_at IS DISTINCT FROM NEW.retired_at
                     OR OLD.uuid IS DISTINCT FROM NEW.uuid
                     OR OLD.model IS DISTINCT FROM NEW.model
                     OR OLD.device IS DISTINCT FROM NEW.device
                     OR OLD.mig_profile IS DISTINCT FROM NEW.mig_profile
                     OR OLD.first_seen IS DISTINCT FROM NEW.first_seen)
  EXECUTE FUNCTION nexus_mark_change();

-- Workloads: inserts only (the newest per GPU is its current one; last_seen touches are not changes).
CREATE TRIGGER gpu_workloads_change BEFORE INSERT ON gpu_workloads
  FOR EACH ROW EXECUTE FUNCTION nexus_mark_change();
