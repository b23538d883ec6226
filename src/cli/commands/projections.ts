import cliProgress from 'cli-progress';
import { PROJECTION_NAMES, PROJECTIONS, projectionNamed } from '../../../projections/index.js';
import { RebuildError, rebuildProjection } from '../../../projections/rebuild.js';
import { formatPosition } from '../../core/event-store.js';
import { type CliCommand, UsageError } from '../context.js';

/** `projections status` (the table of GET /admin/projections) and `projections rebuild [name]`. */

const table = (rows: readonly (readonly string[])[]): string[] => {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd());
};

export const projectionsStatusCommand: CliCommand = {
  name: 'projections status',
  usage: 'projections status            checkpoint, head, lag and status of every projection',
  async run({ deps, print }) {
    const statuses = await deps.projections.statuses();
    const rows = [
      ['name', 'generation', 'checkpoint', 'head', 'lag_events', 'lag_ms', 'status', 'processed'],
      ...statuses.map((s) => [
        s.name,
        String(s.generation),
        s.checkpoint ?? '-',
        s.head ?? '-',
        String(s.lag_events),
        String(s.lag_ms),
        s.status,
        String(s.events_processed),
      ]),
    ];
    for (const line of table(rows)) print(line);
    for (const s of statuses) {
      if (s.error) print(`\n${s.name} FAILED at event ${s.error.event_id ?? '?'} (${s.error.event_type ?? '?'}, position ${s.error.position ?? '?'}): ${s.error.message}`);
      if (s.rebuild) print(`\n${s.name}: generation ${s.rebuild.generation} is ${s.rebuild.status} (checkpoint ${s.rebuild.checkpoint ?? '-'})`);
    }
    await deps.projections.close();
    return statuses.some((s) => s.status === 'failed') ? 1 : 0;
  },
};

export const projectionsRebuildCommand: CliCommand = {
  name: 'projections rebuild',
  usage: `projections rebuild [name]    replay into a new generation and switch (${PROJECTION_NAMES.join(', ')}; default all)`,
  async run({ deps, print }, _values, positionals) {
    if (positionals.length > 1) throw new UsageError('give at most one projection name');
    const name = positionals[0];
    const definitions = name === undefined ? PROJECTIONS : [projectionNamed(name)];
    if (definitions.some((d) => d === undefined)) {
      throw new UsageError(`unknown projection ${name}; one of ${PROJECTION_NAMES.join(', ')}`);
    }
    const interactive = process.stderr.isTTY === true;
    for (const definition of definitions) {
      if (!definition) continue;
      const bar = new cliProgress.SingleBar(
        {
          format: `${definition.name.padEnd(8)} [{bar}] {percentage}% | {value}/{total} events | {speed} events/s | {remaining} remaining`,
          hideCursor: true,
          noTTYOutput: !interactive,
          notTTYSchedule: 2000,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      try {
        const result = await rebuildProjection({
          pool: deps.pool,
          eventStore: deps.eventStore,
          logger: deps.logger,
          definition,
          onStart: (p) => bar.start(Math.max(1, p.remaining), 0, { speed: '0', remaining: p.remaining }),
          onProgress: (p) => {
            bar.setTotal(Math.max(1, p.processed + p.remaining));
            bar.update(p.processed, { speed: Math.round(p.eventsPerSecond).toLocaleString('en'), remaining: p.remaining });
          },
        });
        bar.stop();
        print(
          `${result.name}: generation ${result.generation} replayed ${result.events} events in ${(result.ms / 1000).toFixed(1)} s and is now served` +
            ` (was generation ${result.previousGeneration}; checkpoint ${result.position ? formatPosition(result.position) : '-'})`,
        );
      } catch (error) {
        bar.stop();
        if (error instanceof RebuildError) {
          print(`${definition.name}: ${error.message}`);
          return 1;
        }
        throw error;
      }
    }
  },
};
