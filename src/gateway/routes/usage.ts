import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { TelemetryReader } from '../../store/reader.js';
import { ErrorRef } from '../schemas/common.js';
import { ClusterParams } from '../schemas/fleet.js';
import { IdleList, IdleQuery, UsageQuery, UsageReport } from '../schemas/usage.js';
import {
  idleReport,
  parseIdleParams,
  parseUsageParams,
  usageCsv,
  usageFileName,
  usageReport,
  type FleetSettings,
} from '../usage.js';

const errors = { 400: ErrorRef, 404: ErrorRef, 503: ErrorRef };

/** Whether the client asked for CSV: format=csv, or an Accept preferring text/csv to JSON. */
function wantsCsv(format: string | undefined, accept: string | undefined): boolean {
  if (format !== undefined) return format === 'csv';
  if (accept === undefined) return false;
  const types = accept.split(',').map((p) => p.split(';')[0]?.trim().toLowerCase() ?? '');
  const csv = types.indexOf('text/csv');
  const json = types.findIndex((t) => t === 'application/json' || t === 'application/*');
  return csv !== -1 && (json === -1 || csv < json);
}

/** Idle GPUs and usage/showback of a cluster (docs/fleet.md). */
export const usageRoutes: FastifyPluginAsyncTypebox<{
  reader: TelemetryReader;
  settings: FleetSettings;
}> = async (app, { reader, settings }) => {
  app.get(
    '/api/v1/clusters/:cluster_id/idle',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'GPUs holding a workload whose utilisation stayed below a threshold for a while, most GPU-hours wasted first',
        params: ClusterParams,
        querystring: IdleQuery,
        response: { 200: IdleList, ...errors },
      },
    },
    async (req) => {
      const q = parseIdleParams(req.query.util, req.query.for, settings);
      return idleReport(reader, req.params.cluster_id, q);
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/usage',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'GPU-hours allocated, utilisation while allocated, energy and cost per namespace, pod, host or GPU over a range (CSV with format=csv or Accept: text/csv)',
        params: ClusterParams,
        querystring: UsageQuery,
        response: {
          200: {
            content: {
              'application/json': { schema: UsageReport },
              'text/csv': { schema: { type: 'string' } },
            },
          },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const p = parseUsageParams(req.query);
      const report = await usageReport(reader, req.params.cluster_id, p, settings);
      if (wantsCsv(req.query.format, req.headers.accept)) {
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="${usageFileName(report)}"`)
          .send(usageCsv(report));
      }
      return reply.type('application/json; charset=utf-8').send(report);
    },
  );
};
