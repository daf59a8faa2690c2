// Moved to cni/errors.ts (the CNI protocol package); kept so existing imports keep working.
export * from '../cni/errors.js';
