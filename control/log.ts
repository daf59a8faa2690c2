// The plugin's logger. A CNI plugin's stdout belongs to the runtime (it
// carries the result), so logs go to a file, or to stderr when the file cannot
// be opened, never to stdout. Writes are synchronous appends: the runtime may
// kill the plugin at any moment and the last lines are the ones that matter.
// Every line is one JSON object, so a pod name with a newline in it cannot
// forge a log line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;

export const LOG_LEVELS: readonly LevelWithSilent[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export interface LoggerOptions {
  /** Absolute path of the log file; its directory is created if missing. Omit to log to stderr. */
  file?: string;
  /** pino level name (see LOG_LEVELS); default info. */
  level?: string;
  /** Shown as `name` on every line, e.g. azure-vnet. */
  name: string;
  /** Extra fields on every line. */
  base?: Record<string, unknown>;
}

const STDERR_FD = 2;

/** Open `file` for appending, or say why not. */
function openAppend(file: string): { fd: number } | { error: string } {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    return { fd: fs.openSync(file, 'a', 0o640) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

export function createLogger(options: LoggerOptions): Logger {
  const opened = options.file === undefined ? { fd: STDERR_FD } : openAppend(options.file);
  const fd = 'fd' in opened ? opened.fd : STDERR_FD;
  const level = options.level !== undefined && (LOG_LEVELS as readonly string[]).includes(options.level) ? options.level : 'info';
  const logger = pino(
    {
      name: options.name,
      level,
      base: { pid: process.pid, hostname: os.hostname(), ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd, sync: true }),
  );
  if ('error' in opened) logger.warn({ file: options.file, error: opened.error }, 'cannot open the log file; logging to stderr');
  return logger;
}
