package main

// execChain runs a conflist's plugins directly, for what Debian's libcni
// cannot: spec 1.1.0 configs (it has no 1.1.0 result type) and the GC and
// STATUS verbs. It follows libcni 1.2's rules: each plugin gets the list's
// name and cniVersion, its declared capabilities from the runtime's
// capability args, and the previous plugin's result; DEL runs in reverse;
// the final ADD result is cached for CHECK and DEL.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

type execChain struct {
	list     *libcni.NetworkConfigList
	rt       *libcni.RuntimeConf
	paths    []string
	cacheDir string
}

// cniEnv is the environment for one plugin call: ours minus any CNI_*, plus
// exactly the variables the verb defines (GC and STATUS get no container).
type cniEnv struct {
	command string
	rt      *libcni.RuntimeConf
	path    string
}

func (e *cniEnv) AsEnv() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_") {
			env = append(env, kv)
		}
	}
	env = append(env, "CNI_COMMAND="+e.command, "CNI_PATH="+e.path)
	if e.rt != nil {
		pairs := make([]string, 0, len(e.rt.Args))
		for _, kv := range e.rt.Args {
			pairs = append(pairs, kv[0]+"="+kv[1])
		}
		env = append(env,
			"CNI_CONTAINERID="+e.rt.ContainerID,
			"CNI_NETNS="+e.rt.NetNS,
			"CNI_IFNAME="+e.rt.IfName,
			"CNI_ARGS="+strings.Join(pairs, ";"),
		)
	}
	return env
}

func (c *execChain) pluginConfig(p *libcni.NetworkConfig, prevResult json.RawMessage, extra map[string]interface{}) ([]byte, error) {
	conf := map[string]interface{}{}
	if err := json.Unmarshal(p.Bytes, &conf); err != nil {
		return nil, err
	}
	conf["name"] = c.list.Name
	conf["cniVersion"] = c.list.CNIVersion
	if prevResult != nil {
		conf["prevResult"] = prevResult
	}
	if c.rt != nil {
		rc := map[string]interface{}{}
		for capability, supported := range p.Network.Capabilities {
			if data, ok := c.rt.CapabilityArgs[capability]; ok && supported {
				rc[capability] = data
			}
		}
		if len(rc) > 0 {
			conf["runtimeConfig"] = rc
		}
	}
	for k, v := range extra {
		conf[k] = v
	}
	return json.Marshal(conf)
}

func (c *execChain) call(ctx context.Context, verb string, p *libcni.NetworkConfig, stdin []byte, rt *libcni.RuntimeConf) ([]byte, error) {
	exec := &invoke.RawExec{Stderr: os.Stderr}
	pluginPath, err := exec.FindInPath(p.Network.Type, c.paths)
	if err != nil {
		return nil, err
	}
	env := &cniEnv{command: verb, rt: rt, path: strings.Join(c.paths, string(filepath.ListSeparator))}
	out, err := exec.ExecPlugin(ctx, pluginPath, stdin, env.AsEnv())
	if err != nil {
		return nil, fmt.Errorf("plugin type=%q failed (%s): %w", p.Network.Type, strings.ToLower(verb), err)
	}
	return out, nil
}

func (c *execChain) cachePath() string {
	name := fmt.Sprintf("%s-%s-%s.json", c.list.Name, c.rt.ContainerID, c.rt.IfName)
	return filepath.Join(c.cacheDir, "vnet-cniclient", name)
}

func (c *execChain) add(ctx context.Context) ([]byte, error) {
	var result json.RawMessage
	for _, p := range c.list.Plugins {
		stdin, err := c.pluginConfig(p, result, nil)
		if err != nil {
			return nil, err
		}
		out, err := c.call(ctx, "ADD", p, stdin, c.rt)
		if err != nil {
			return nil, err
		}
		if !json.Valid(out) {
			return nil, fmt.Errorf("plugin type=%q printed a result that is not JSON: %q", p.Network.Type, out)
		}
		result = out
	}
	if err := os.MkdirAll(filepath.Dir(c.cachePath()), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.cachePath(), result, 0o600); err != nil {
		return nil, err
	}
	return result, nil
}

func (c *execChain) cachedResult() (json.RawMessage, error) {
	b, err := os.ReadFile(c.cachePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (c *execChain) check(ctx context.Context) error {
	if ok, err := version.GreaterThanOrEqualTo(c.list.CNIVersion, "0.4.0"); err != nil || !ok {
		return fmt.Errorf("configuration version %q does not support the CHECK command", c.list.CNIVersion)
	}
	prev, err := c.cachedResult()
	if err != nil {
		return err
	}
	for _, p := range c.list.Plugins {
		stdin, err := c.pluginConfig(p, prev, nil)
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, "CHECK", p, stdin, c.rt); err != nil {
			return err
		}
	}
	return nil
}

func (c *execChain) del(ctx context.Context) error {
	prev, err := c.cachedResult()
	if err != nil {
		return err
	}
	for i := len(c.list.Plugins) - 1; i >= 0; i-- {
		p := c.list.Plugins[i]
		stdin, err := c.pluginConfig(p, prev, nil)
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, "DEL", p, stdin, c.rt); err != nil {
			return err
		}
	}
	_ = os.Remove(c.cachePath())
	return nil
}

// gc sends GC with the valid attachments to every plugin. Unlike libcni 1.2
// it does not first DEL stale cached attachments: that is the runtime's
// bookkeeping, not the plugin's contract under test.
func (c *execChain) gc(ctx context.Context, valid []attachment) error {
	extra := map[string]interface{}{"cni.dev/valid-attachments": valid}
	return c.eachPlugin(ctx, "GC", extra)
}

func (c *execChain) status(ctx context.Context) error {
	return c.eachPlugin(ctx, "STATUS", nil)
}

// eachPlugin runs a container-less verb on every plugin in order, stopping at
// the first error.
func (c *execChain) eachPlugin(ctx context.Context, verb string, extra map[string]interface{}) error {
	for _, p := range c.list.Plugins {
		saved := c.rt
		c.rt = nil // no capability args, no container env
		stdin, err := c.pluginConfig(p, nil, extra)
		c.rt = saved
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, verb, p, stdin, nil); err != nil {
			return err
		}
	}
	return nil
}
