// azure-vnet-ipam: the IPAM plugin (ADD/DEL allocate/release a VNet address). See docs/cni.md.
import { main } from './main.js';

await main('azure-vnet-ipam');
