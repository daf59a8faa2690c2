// vnetcni.proto as a protobufjs JSON descriptor, so the codec needs neither the
// .proto file nor the protobufjs parser at run time (the bundled plugin has no
// source tree next to it). vnetcni.proto stays the source of truth:
// test/unit/daemon-codec.test.ts fails if the two disagree. Regenerate with
//   node -e "const p=require('protobufjs');console.log(JSON.stringify(p.parse(require('fs').readFileSync('control/daemon/vnetcni.proto','utf8')).root.toJSON(),null,2))"
export const VNETCNI_SCHEMA = {
  nested: {
    vnetcni: {
      nested: {
        v1: {
          nested: {
            Verb: { values: { VERB_UNSPECIFIED: 0, ADD: 1, DEL: 2, CHECK: 3, GC: 4, STATUS: 5, IPAM_ADD: 6, IPAM_DEL: 7, DUMP: 8, INVOKE: 9 } },
            Attachment: { fields: { containerId: { type: 'string', id: 1 }, ifName: { type: 'string', id: 2 } } },
            Request: {
              fields: {
                clientVersion: { type: 'string', id: 1 },
                verb: { type: 'Verb', id: 2 },
                containerId: { type: 'string', id: 3 },
                netns: { type: 'string', id: 4 },
                ifName: { type: 'string', id: 5 },
                args: { keyType: 'string', type: 'string', id: 6 },
                configJson: { type: 'string', id: 7 },
                prevResultJson: { type: 'string', id: 8 },
                validAttachments: { rule: 'repeated', type: 'Attachment', id: 9 },
                stdin: { type: 'bytes', id: 10 },
                env: { keyType: 'string', type: 'string', id: 11 },
                plugin: { type: 'string', id: 12 },
              },
            },
            Error: { fields: { cniCode: { type: 'uint32', id: 1 }, code: { type: 'string', id: 2 }, message: { type: 'string', id: 3 }, details: { type: 'string', id: 4 } } },
            Response: {
              fields: {
                ok: { type: 'bool', id: 1 },
                resultJson: { type: 'string', id: 2 },
                error: { type: 'Error', id: 3 },
                stdout: { type: 'bytes', id: 4 },
                exitCode: { type: 'uint32', id: 5 },
              },
            },
          },
        },
      },
    },
  },
} as const;
