// cniclient drives CNI plugins the way a container runtime does, through
// Debian's libcni (github.com/containernetworking/cni 1.1.2). That libcni
// speaks spec versions up to 1.0.0 and has no GC or STATUS, so for those verbs
// and for 1.1.0 conflists the client runs the plugin chain itself with the
// same env and stdin a 1.1-era libcni would use (see execchain.go).
//
// Usage:
//
//	cniclient add|del|check|gc|status --conflist FILE [--container ID]
//	  [--netns PATH] [--ifname eth0] [--args K=V;...] [--capability-args JSON]
//	  [--valid-attachments JSON] [--cni-path DIR:DIR] [--cache-dir DIR]
//	  [--timeout 120s] [--exec]
//	cniclient batch --conflist FILE [...]   (ADD/DEL jobs as JSON lines on stdin; see batch.go)
//
// The result (ADD) is printed to stdout; errors go to stderr as one JSON line
// {"code":N,"msg":...,"details":...} with exit code 1 (2 for usage errors).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// codeClient marks failures of the client itself (bad flags, unreadable
// files) as opposed to errors a plugin reported.
const codeClient = -1

type options struct {
	verb             string
	conflist         string
	containerID      string
	netns            string
	ifname           string
	args             string
	capabilityArgs   string
	validAttachments string
	cniPath          string
	cacheDir         string
	timeout          time.Duration
	forceExec        bool
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		fail(err, 2)
	}
	if err := refuseRootNetns(); err != nil {
		fail(err, 2)
	}
	if opts.verb == "batch" {
		runBatch(opts)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
	defer cancel()
	out, err := runVerb(ctx, opts)
	if err != nil {
		fail(err, 1)
	}
	if out != nil {
		os.Stdout.Write(append(out, '\n'))
	}
}

func parseFlags(argv []string, stderr io.Writer) (*options, error) {
	if len(argv) == 0 || strings.HasPrefix(argv[0], "-") {
		return nil, usageError{"usage: cniclient add|del|check|gc|status --conflist FILE [flags]"}
	}
	o := &options{verb: argv[0]}
	fs := flag.NewFlagSet("cniclient "+o.verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.conflist, "conflist", "", "network configuration list (.conflist JSON)")
	fs.StringVar(&o.containerID, "container", "", "container ID (CNI_CONTAINERID)")
	fs.StringVar(&o.netns, "netns", "", "path of the container network namespace (CNI_NETNS)")
	fs.StringVar(&o.ifname, "ifname", "eth0", "interface name inside the container (CNI_IFNAME)")
	fs.StringVar(&o.args, "args", "", "CNI_ARGS as K=V;K=V")
	fs.StringVar(&o.capabilityArgs, "capability-args", "", `capability arguments as JSON, e.g. {"portMappings":[...]}`)
	fs.StringVar(&o.validAttachments, "valid-attachments", "[]", `GC: JSON list of {"containerID":..,"ifname":..}`)
	fs.StringVar(&o.cniPath, "cni-path", os.Getenv("CNI_PATH"), "plugin directories, colon separated (default $CNI_PATH or /opt/cni/bin)")
	fs.StringVar(&o.cacheDir, "cache-dir", libcni.CacheDir, "where results are cached between ADD and CHECK/DEL")
	fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "give up on the whole chain after this long")
	fs.BoolVar(&o.forceExec, "exec", false, "run the chain without libcni even for versions libcni supports")
	if err := fs.Parse(argv[1:]); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() != 0 {
		return nil, usageError{fmt.Sprintf("unexpected arguments: %v", fs.Args())}
	}
	switch o.verb {
	case "add", "del", "check", "gc", "status", "batch":
	default:
		return nil, usageError{fmt.Sprintf("unknown verb %q: want add, del, check, gc or status", o.verb)}
	}
	if o.conflist == "" {
		return nil, usageError{"--conflist is required"}
	}
	if o.cniPath == "" {
		o.cniPath = "/opt/cni/bin"
	}
	perContainer := o.verb == "add" || o.verb == "del" || o.verb == "check"
	if perContainer && o.containerID == "" {
		return nil, usageError{"--container is required for " + o.verb}
	}
	if (o.verb == "add" || o.verb == "check") && o.netns == "" {
		return nil, usageError{"--netns is required for " + o.verb}
	}
	return o, nil
}

// refuseRootNetns keeps the client (and every plugin it runs) out of the
// machine's own network namespace: tests run it via `ip netns exec`. Where
// PID 1's namespace cannot be read (a sandbox without ptrace rights over
// PID 1), only a named namespace (/run/netns/*) counts as safe: fail closed.
func refuseRootNetns() error {
	self, err := nsID("/proc/self/ns/net")
	if err != nil {
		return err
	}
	if init, err := nsID("/proc/1/ns/net"); err == nil {
		if init == self {
			return usageError{"refusing to run in the root network namespace; run me via `ip netns exec <ns>`"}
		}
		return nil
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if id, err := nsID(filepath.Join(dir, e.Name())); err == nil && id == self {
				return nil
			}
		}
	}
	return usageError{"refusing to run: /proc/1/ns/net is unreadable and this network namespace is not a named one under /run/netns; run me via `ip netns exec <ns>`"}
}

type nsIdentity struct{ dev, ino uint64 }

func nsID(path string) (nsIdentity, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsIdentity{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return nsIdentity{dev: uint64(st.Dev), ino: st.Ino}, nil
}

func runVerb(ctx context.Context, o *options) ([]byte, error) {
	list, err := libcni.ConfListFromFile(o.conflist)
	if err != nil {
		return nil, usageError{fmt.Sprintf("read %s: %v", o.conflist, err)}
	}
	rt, err := runtimeConf(o)
	if err != nil {
		return nil, err
	}
	paths := filepath.SplitList(o.cniPath)
	if (o.verb == "gc" || o.verb == "status") && !o.forceExec {
		// As libcni 1.2: configs older than 1.1.0 know neither verb.
		if ok, err := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0"); err != nil || !ok {
			fmt.Fprintf(os.Stderr, "cniclient: %s skipped: cniVersion %q predates it (1.1.0); --exec sends it anyway\n", o.verb, list.CNIVersion)
			return nil, nil
		}
	}
	if o.forceExec || o.verb == "gc" || o.verb == "status" || !libcniSpeaks(list.CNIVersion) {
		chain := &execChain{list: list, rt: rt, paths: paths, cacheDir: o.cacheDir}
		switch o.verb {
		case "add":
			return chain.add(ctx)
		case "del":
			return nil, chain.del(ctx)
		case "check":
			return nil, chain.check(ctx)
		case "gc":
			valid, err := parseAttachments(o.validAttachments)
			if err != nil {
				return nil, err
			}
			return nil, chain.gc(ctx, valid)
		default:
			return nil, chain.status(ctx)
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(paths, o.cacheDir, nil)
	switch o.verb {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return nil, err
		}
		return json.Marshal(result)
	case "del":
		return nil, cni.DelNetworkList(ctx, list, rt)
	default:
		return nil, cni.CheckNetworkList(ctx, list, rt)
	}
}

func libcniSpeaks(v string) bool {
	for _, s := range version.All.SupportedVersions() {
		if s == v {
			return true
		}
	}
	return false
}

func runtimeConf(o *options) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{ContainerID: o.containerID, NetNS: o.netns, IfName: o.ifname}
	if o.args != "" {
		for _, pair := range strings.Split(o.args, ";") {
			kv := strings.SplitN(pair, "=", 2)
			if len(kv) != 2 {
				return nil, usageError{fmt.Sprintf("--args: %q is not K=V", pair)}
			}
			rt.Args = append(rt.Args, [2]string{kv[0], kv[1]})
		}
	}
	if o.capabilityArgs != "" {
		if err := json.Unmarshal([]byte(o.capabilityArgs), &rt.CapabilityArgs); err != nil {
			return nil, usageError{fmt.Sprintf("--capability-args: %v", err)}
		}
	}
	return rt, nil
}

// attachment is one entry of cni.dev/valid-attachments (spec 1.1.0 GC).
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

func parseAttachments(s string) ([]attachment, error) {
	var out []attachment
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, usageError{fmt.Sprintf("--valid-attachments: %v", err)}
	}
	if out == nil {
		out = []attachment{}
	}
	return out, nil
}

// fail prints err as one JSON line on stderr and exits.
func fail(err error, exitCode int) {
	body := map[string]interface{}{"code": codeClient, "msg": err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		body["code"] = cniErr.Code
		body["msg"] = cniErr.Msg
		if cniErr.Details != "" {
			body["details"] = cniErr.Details
		}
		if wrapped := err.Error(); wrapped != cniErr.Error() {
			body["context"] = wrapped
		}
	}
	line, _ := json.Marshal(body)
	os.Stderr.Write(append(line, '\n'))
	os.Exit(exitCode)
}
