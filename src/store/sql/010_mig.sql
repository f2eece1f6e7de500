-- Nexus schema 10: MIG instances. dcgm-exporter reports each GPU instance of a MIG-partitioned GPU
-- as its own series (the GPU's index and UUID, plus GPU_I_ID and GPU_I_PROFILE labels). A GPU row
-- is now (host, GPU index, GPU instance id): -1 is the whole (physical) GPU, every other value one
-- of its instances, with its own readings, rollups, latest values and workloads. docs/fleet.md, "MIG
-- instances".

ALTER TABLE gpus ADD COLUMN gpu_instance_id smallint NOT NULL DEFAULT -1 CHECK (gpu_instance_id >= -1);
ALTER TABLE gpus ADD COLUMN mig_profile text;
ALTER TABLE gpus DROP CONSTRAINT gpus_host_id_gpu_index_key;
ALTER TABLE gpus ADD CONSTRAINT gpus_host_id_gpu_index_instance_key
  UNIQUE (host_id, gpu_index, gpu_instance_id);
