// azure-vnet: the CNI plugin that puts pods on the VNet. See docs/cni.md.
import { main } from './main.js';
import { debugIfAsked } from '../debug/plugin-entry.js'; // `azure-vnet debug ...` (control/debug)

await debugIfAsked(process.argv);
await main('azure-vnet');
