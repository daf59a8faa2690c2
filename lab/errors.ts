// The lab's errors, as subclasses of the project's one hierarchy. The lab is
// never part of a CNI call, so the CNI codes only matter for consistency.
import { CniCode, VnetError } from '../control/errors.js';

/** A lab spec (vnet.json, --spec file, API argument) that breaks a rule. */
export class LabSpecError extends VnetError {
  override readonly code = 'ELABSPEC';
  override readonly cniCode = CniCode.InvalidConfig;
}

/** Bringing the lab up, changing it or tearing it down failed. */
export class LabError extends VnetError {
  override readonly code = 'ELAB';
  override readonly cniCode = CniCode.Internal;
}

/** A lab helper (whoami, ping, udp) did not get its answer in time. */
export class LabTimeoutError extends VnetError {
  override readonly code = 'ELABTIMEOUT';
  override readonly cniCode = CniCode.TryAgainLater;
}
