// One error hierarchy for the plugin and the whole control plane. Every error
// carries a stable `code` (for logs and tests) and the CNI error code it maps
// to, so the CNI front end never has to guess how to report a failure. Lives in
// the CNI protocol package so cni/ needs nothing of control/.

/** CNI spec error codes (SPEC.md "Error" section) plus plugin-specific ones (>= 100). */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotReadyLimitedConnectivity: 51,
  // Plugin-specific (the spec reserves 100+ for plugins).
  IpamExhausted: 100,
  DataplaneUnavailable: 101,
  Internal: 999,
} as const;
export type CniCodeValue = (typeof CniCode)[keyof typeof CniCode];

export class VnetError extends Error {
  readonly code: string = 'EVNET';
  readonly cniCode: number = CniCode.Internal;
  /** Optional extra detail, printed as the CNI error's `details`. */
  readonly details: string | undefined;
  constructor(message: string, options?: { cause?: unknown; details?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options?.details;
  }
}

/** The network configuration (stdin) is malformed or names unsupported values. */
export class InvalidConfigError extends VnetError {
  override readonly code = 'EINVALIDCONFIG';
  override readonly cniCode = CniCode.InvalidConfig;
}
/** A CNI_* environment variable is missing or malformed. */
export class InvalidEnvError extends VnetError {
  override readonly code = 'EINVALIDENV';
  override readonly cniCode = CniCode.InvalidEnv;
}
/** The requested cniVersion is not one we speak. */
export class IncompatibleVersionError extends VnetError {
  override readonly code = 'EVERSION';
  override readonly cniCode = CniCode.IncompatibleVersion;
}
/** stdin could not be decoded as JSON. */
export class DecodeError extends VnetError {
  override readonly code = 'EDECODE';
  override readonly cniCode = CniCode.DecodeFailure;
}
/** CHECK/GC named a container we hold no state for. */
export class UnknownContainerError extends VnetError {
  override readonly code = 'EUNKNOWNCONTAINER';
  override readonly cniCode = CniCode.UnknownContainer;
}
/** A transient condition: a lock held too long, a pool source that timed out. Retry. */
export class TryAgainError extends VnetError {
  override readonly code = 'ETRYAGAIN';
  override readonly cniCode = CniCode.TryAgainLater;
}
/** No free address left in the node's pool (or the per-node pod limit is reached). */
export class PoolExhaustedError extends VnetError {
  override readonly code = 'EPOOLEXHAUSTED';
  override readonly cniCode = CniCode.IpamExhausted;
}
/** The pool source (wireserver, file, API) could not be read or returned garbage. */
export class PoolSourceError extends VnetError {
  override readonly code = 'EPOOLSOURCE';
  override readonly cniCode = CniCode.TryAgainLater;
}
/** Reading or writing durable state failed (disk full, read-only, corrupt file). */
export class StoreError extends VnetError {
  override readonly code = 'ESTORE';
  override readonly cniCode = CniCode.IoFailure;
}
/** The host lacks something the chosen dataplane needs (eth0, a kernel feature, a tool). */
export class DataplaneUnavailableError extends VnetError {
  override readonly code = 'EDATAPLANE';
  override readonly cniCode = CniCode.DataplaneUnavailable;
}
/** A command or kernel operation failed while programming the dataplane. */
export class DataplaneError extends VnetError {
  override readonly code = 'EDATAPLANEOP';
  override readonly cniCode = CniCode.Internal;
}
/** The plugin was started where it must not run (e.g. the machine's root network namespace in the lab). */
export class UnsafeEnvironmentError extends VnetError {
  override readonly code = 'EUNSAFE';
  override readonly cniCode = CniCode.PluginNotAvailable;
}
/** The plugin is not ready to serve (STATUS). */
export class NotReadyError extends VnetError {
  override readonly code = 'ENOTREADY';
  override readonly cniCode = CniCode.PluginNotAvailable;
}

/** What an operator should do about a filesystem error on the state directory ('' if nothing specific). */
export function storageHint(err: unknown, dir: string): string {
  switch ((err as NodeJS.ErrnoException | undefined)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `; the filesystem holding ${dir} is full: free space there, then retry`;
    case 'EROFS':
      return `; ${dir} is on a read-only filesystem: remount it read-write, then retry`;
    case 'EACCES':
    case 'EPERM':
      return `; the plugin runs as root and needs write access to ${dir}`;
    default:
      return '';
  }
}

/** Wrap anything thrown into a VnetError, keeping typed errors as they are. */
export function asVnetError(err: unknown): VnetError {
  if (err instanceof VnetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VnetError(message, { cause: err });
}
