/**
 * The start and stop every long-running nitride service (the daemon, the KMS) goes through:
 * start-up owns the state directory first and undoes what it did if a later step fails; the
 * stop tells systemd, then runs its steps in order, logging a failed step and going on.
 */
import type { Logger } from '../log/logger.js';
import { sdNotify } from '../native/addon.js';
import { StateDir, type Service } from './state-dir.js';

/**
 * Take `service`'s state directory, then `build` the service; if that throws, every step
 * registered with `undo` is undone, newest first, and the directory's lock released.
 */
export async function startService<T>(service: Service, stateDir: string, build: (state: StateDir, undo: (step: () => Promise<void>) => void) => Promise<T>): Promise<T> {
  const state = await StateDir.open(stateDir, service);
  const undos: Array<() => Promise<void>> = [() => state.release()];
  try {
    return await build(state, (step) => undos.push(step));
  } catch (err) {
    for (const step of undos.reverse()) await step().catch(() => {});
    throw err;
  }
}

/** A step of a stop: its name (logged if it fails) and what it does. */
export type StopStep = [name: string, run: () => Promise<void>];

/** Stop a service: STOPPING=1 to systemd, then `steps` in order; a failed step is logged and the next still runs. */
export async function stopService(service: Service, reason: string, log: Logger, steps: StopStep[]): Promise<void> {
  log.info({ reason }, `${service} stopping`);
  sdNotify('STOPPING=1');
  for (const [name, step] of steps) {
    await step().catch((err: unknown) => log.error({ err, step: name }, 'stop step failed'));
  }
  log.info(`${service} stopped`);
}

/**
 * Run a service in the foreground until SIGTERM or SIGINT, then stop it with the signal's name.
 * The handlers are installed before `start`: a signal that arrives while the service starts
 * (its socket may already answer) stops it cleanly once started instead of killing the
 * process. Once stopping, a second signal has its default effect.
 */
export async function runUntilSignal(start: () => Promise<{ stop(reason: string): Promise<void> }>): Promise<void> {
  let received: NodeJS.Signals | undefined;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    received ??= signal;
    if (!wake) return;
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    wake();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const service = await start();
    await new Promise<void>((resolve) => {
      wake = resolve;
      if (received) onSignal(received);
    });
    await service.stop(received!);
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
