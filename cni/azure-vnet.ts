// azure-vnet: the CNI plugin that puts pods on the VNet. See docs/cni.md.
import { main } from './main.js';

await main('azure-vnet');
