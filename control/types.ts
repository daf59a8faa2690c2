// Moved to cni/types.ts (the CNI protocol package); kept so existing imports keep working.
export * from '../cni/types.js';
