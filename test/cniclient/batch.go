package main

// cniclient batch: many ADD/DEL calls through libcni from one client process,
// for the scale bench (one process per VM instead of one per pod). Each call
// is exactly what `cniclient add|del` does (libcni execs the plugin chain);
// only the client's own start-up is shared.
//
// stdin: one JSON job per line
//   {"id":1,"verb":"add","container":"c1","netns":"/run/netns/x","ifname":"eth0","args":"K=V;K=V"}
// stdout: one JSON line per finished job, in completion order
//   {"id":1,"ok":true,"result":{...}}   or   {"id":1,"ok":false,"error":{"code":N,"msg":"..."}}
// Jobs run concurrently as they arrive (the caller bounds how many it sends).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"

	"github.com/containernetworking/cni/pkg/types"
)

type batchJob struct {
	ID        int    `json:"id"`
	Verb      string `json:"verb"`
	Container string `json:"container"`
	Netns     string `json:"netns"`
	Ifname    string `json:"ifname"`
	Args      string `json:"args"`
}

type batchReply struct {
	ID     int             `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  interface{}     `json:"error,omitempty"`
}

func runBatch(base *options) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1024*1024)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for in.Scan() {
		var job batchJob
		if err := json.Unmarshal(in.Bytes(), &job); err != nil {
			fail(usageError{"batch: bad job line: " + err.Error()}, 2)
		}
		wg.Add(1)
		go func(job batchJob) {
			defer wg.Done()
			o := *base
			o.verb, o.containerID, o.netns, o.args = job.Verb, job.Container, job.Netns, job.Args
			o.ifname = job.Ifname
			if o.ifname == "" {
				o.ifname = "eth0"
			}
			reply := batchReply{ID: job.ID}
			if job.Verb != "add" && job.Verb != "del" {
				reply.Error = map[string]interface{}{"code": codeClient, "msg": "batch: verb must be add or del"}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
				res, err := runVerb(ctx, &o)
				cancel()
				if err != nil {
					body := map[string]interface{}{"code": codeClient, "msg": err.Error()}
					var cniErr *types.Error
					if errors.As(err, &cniErr) {
						body["code"], body["msg"] = cniErr.Code, cniErr.Msg
					}
					reply.Error = body
				} else {
					reply.OK, reply.Result = true, res
				}
			}
			line, _ := json.Marshal(reply)
			mu.Lock()
			out.Write(append(line, '\n'))
			out.Flush()
			mu.Unlock()
		}(job)
	}
	wg.Wait()
}
