import { KubeConfig } from '@kubernetes/client-node';
import { KubeApi } from '../dist/control/k8s/kube-api.js';
import { KubeStandin } from '../dist/lab/kube-standin.js';
const s = new KubeStandin(0);
const port = await s.listen();
const kc = new KubeConfig();
kc.loadFromOptions({ clusters: [{ name: 'standin', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }], users: [{ name: 'daemon', token: 'test' }], contexts: [{ name: 'standin', cluster: 'standin', user: 'daemon' }], currentContext: 'standin' });
const api = new KubeApi(kc, 5000);
s.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n' }, spec: {}, status: { conditions: [] } });
try { await api.patchNodeCondition('n', { type: 'NetworkUnavailable', status: 'False', reason: 'x', message: 'y', lastTransitionTime: new Date().toISOString(), lastHeartbeatTime: new Date().toISOString() }); } catch (e) { console.log('patch err', e); }
console.log(s.requests);
s.put({ apiVersion: 'vnetcni.dev/v1alpha1', kind: 'NodeNetworkConfig', metadata: { name: 'n', namespace: 'kube-system' }, spec: { primaryIP: '10.240.0.4', subnet: '10.240.0.0/16', secondaryIPs: [] } });
const lw = api.nncListWatch('kube-system', 'n');
console.log(await lw.list().catch(e => e));
const ac = new AbortController();
const p = lw.watch('1', (e) => console.log('event', e.type, e.object.metadata?.resourceVersion), ac.signal);
setTimeout(() => { console.log('requests', s.requests.slice(-2)); ac.abort(); }, 1000);
console.log('end', await p);
await s.close();
