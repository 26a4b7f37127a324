// stargz-grpc: a minimal stargz-snapshotter daemon for strata's benchmarks.
//
// It serves containerd's snapshots gRPC API on a unix socket, backed by the
// stargz-snapshotter library (remote snapshotter + lazy eStargz FUSE
// filesystem) as packaged by Debian 12 (golang-github-containerd-stargz-
// snapshotter-dev 0.12.0). containerd loads it as a proxy plugin:
//
//	[proxy_plugins.stargz]
//	  type = "snapshot"
//	  address = "/run/stargz-grpc/stargz-grpc.sock"
//
// The library's own assembly helper (package service) cannot be used: its
// resolver subpackage imports k8s.io/cri-api, which Debian 12 does not ship.
// So this program wires fs.NewFilesystem and snapshot.NewSnapshotter itself,
// the same way that helper does minus the CRI/kubeconfig credential sources,
// and builds its own registry-host resolution (anonymous pulls; plain HTTP
// for loopback registries and for hosts named with --plain-http or marked
// insecure in the config file).
//
// Built by bench/peers/build_stargz_peer.sh in GOPATH mode from Debian's
// /usr/share/gocode, offline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay/overlayutils"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	fsconfig "github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	metrics "github.com/docker/go-metrics"
	rhttp "github.com/hashicorp/go-retryablehttp"
	"github.com/moby/sys/mountinfo"
	toml "github.com/pelletier/go-toml"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

// daemonConfig is the --config file schema. The filesystem part is the
// library's fs/config.Config (top-level keys such as no_background_fetch,
// prefetch_size, [blob], [directory_cache], [fuse]); [resolver] has the same
// shape as upstream's. Other upstream sections (keychains) are ignored.
type daemonConfig struct {
	fsconfig.Config
	Resolver resolverConfig `toml:"resolver"`
}

type resolverConfig struct {
	Host map[string]hostConfig `toml:"host"`
}

type hostConfig struct {
	Mirrors []mirrorConfig `toml:"mirrors"`
}

type mirrorConfig struct {
	Host              string `toml:"host"`
	Insecure          bool   `toml:"insecure"`
	RequestTimeoutSec int    `toml:"request_timeout_sec"`
}

const defaultRequestTimeout = 30 * time.Second

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	address           string
	root              string
	configPath        string
	logLevel          string
	metricsAddress    string
	noBackgroundFetch bool
	noPrefetch        bool
	prefetchSize      int64
	plainHTTP         listFlag
	cleanupOnExit     bool
}

func main() {
	var o options
	flag.StringVar(&o.address, "address", "/run/stargz-grpc/stargz-grpc.sock", "unix socket to serve containerd's snapshots API on")
	flag.StringVar(&o.root, "root", "/var/lib/stargz-grpc", "state directory (snapshots, metadata, layer caches)")
	flag.StringVar(&o.configPath, "config", "", "optional TOML file (fs/config keys and [resolver.host.\"HOST\"] mirrors, as upstream's config.toml)")
	flag.StringVar(&o.logLevel, "log-level", "info", "panic, fatal, error, warn, info, debug or trace")
	flag.StringVar(&o.metricsAddress, "metrics-address", "", "optional TCP address for Prometheus metrics (/metrics)")
	flag.BoolVar(&o.noBackgroundFetch, "no-background-fetch", false, "do not fetch whole layers in the background (overrides the config file)")
	flag.BoolVar(&o.noPrefetch, "no-prefetch", false, "do not prefetch the landmarked prefix of layers (overrides the config file)")
	flag.Int64Var(&o.prefetchSize, "prefetch-size", 0, "bytes to prefetch when a layer has no prefetch landmark (overrides the config file)")
	flag.Var(&o.plainHTTP, "plain-http", "registry HOST[:PORT] to reach over plain HTTP (repeatable; loopback hosts always are)")
	flag.BoolVar(&o.cleanupOnExit, "cleanup-on-exit", false, "on exit also remove every snapshot directory (the library's Close); default: only unmount the FUSE layers so a restart restores them")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "stargz-grpc: unexpected arguments: %v\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}

	lvl, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stargz-grpc: bad --log-level: %v\n", err)
		os.Exit(2)
	}
	logrus.SetLevel(lvl)
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})

	if err := run(o); err != nil {
		log.L.WithError(err).Error("stargz-grpc failed")
		os.Exit(1)
	}
}

func loadConfig(o *options) (daemonConfig, error) {
	var cfg daemonConfig
	data := []byte{}
	if o.configPath != "" {
		b, err := os.ReadFile(o.configPath)
		if err != nil {
			return cfg, err
		}
		data = b
	}
	// Unmarshal even an empty document: go-toml applies the library's
	// `default:` struct tags (directory_cache.direct = true).
	if err := toml.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("parse %s: %w", o.configPath, err)
	}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "no-background-fetch":
			cfg.NoBackgroundFetch = o.noBackgroundFetch
		case "no-prefetch":
			cfg.NoPrefetch = o.noPrefetch
		case "prefetch-size":
			cfg.PrefetchSize = o.prefetchSize
		}
	})
	if cfg.Resolver.Host == nil {
		cfg.Resolver.Host = map[string]hostConfig{}
	}
	for _, h := range o.plainHTTP {
		hc := cfg.Resolver.Host[h]
		hc.Mirrors = append([]mirrorConfig{{Host: h, Insecure: true}}, hc.Mirrors...)
		cfg.Resolver.Host[h] = hc
	}
	return cfg, nil
}

// registryHosts resolves a reference's registry to the hosts to try, in order:
// the configured mirrors, then the registry itself. Pulls are anonymous (the
// docker authorizer still handles anonymous bearer-token challenges).
func registryHosts(cfg resolverConfig) source.RegistryHosts {
	return func(ref reference.Spec) ([]docker.RegistryHost, error) {
		name := ref.Hostname()
		candidates := append(append([]mirrorConfig{}, cfg.Host[name].Mirrors...), mirrorConfig{Host: name})
		var hosts []docker.RegistryHost
		for _, m := range candidates {
			rc := rhttp.NewClient()
			rc.Logger = nil
			client := rc.StandardClient()
			switch {
			case m.RequestTimeoutSec == 0:
				client.Timeout = defaultRequestTimeout
			case m.RequestTimeoutSec > 0:
				client.Timeout = time.Duration(m.RequestTimeoutSec) * time.Second
			}
			h := docker.RegistryHost{
				Client:       client,
				Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(client)),
				Host:         m.Host,
				Scheme:       "https",
				Path:         "/v2",
				Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
			}
			if local, _ := docker.MatchLocalhost(h.Host); local || m.Insecure {
				h.Scheme = "http"
			}
			if h.Host == "docker.io" {
				h.Host = "registry-1.docker.io"
			}
			hosts = append(hosts, h)
		}
		return hosts, nil
	}
}

func newSnapshotter(ctx context.Context, root string, cfg daemonConfig) (snapshots.Snapshotter, error) {
	snRoot := filepath.Join(root, "snapshotter")
	if err := os.MkdirAll(snRoot, 0700); err != nil {
		return nil, err
	}
	if err := overlayutils.Supported(snRoot); err != nil {
		return nil, fmt.Errorf("overlayfs is not usable under %s: %w", snRoot, err)
	}
	opaque := layer.OverlayOpaqueTrusted
	if userxattr, err := overlayutils.NeedsUserXAttr(snRoot); err != nil {
		log.G(ctx).WithError(err).Warn("cannot tell whether overlayfs needs userxattr; assuming not")
	} else if userxattr {
		opaque = layer.OverlayOpaqueUser
	}
	fs, err := stargzfs.NewFilesystem(filepath.Join(root, "stargz"), cfg.Config,
		stargzfs.WithGetSources(source.FromDefaultLabels(registryHosts(cfg.Resolver))),
		stargzfs.WithOverlayOpaqueType(opaque),
		stargzfs.WithMetricsLogLevel(logrus.DebugLevel))
	if err != nil {
		return nil, fmt.Errorf("stargz filesystem: %w", err)
	}
	return snbase.NewSnapshotter(ctx, snRoot, fs, snbase.AsynchronousRemove)
}

func listen(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0711); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(address); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", address)
		}
		if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", address)
}

// unmountLayers unmounts every mount under the snapshots directory (the
// FUSE-mounted remote layers), deepest first.
func unmountLayers(ctx context.Context, root string) {
	dir := filepath.Join(root, "snapshotter", "snapshots")
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot read mountinfo; layers may stay mounted")
		return
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		err := syscall.Unmount(m.Mountpoint, syscall.MNT_FORCE)
		if err != nil {
			// Still busy (e.g. an overlay of a running container on top of
			// it): detach it so the daemon can exit.
			err = syscall.Unmount(m.Mountpoint, syscall.MNT_DETACH)
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", m.Mountpoint).Warn("unmount failed")
		} else {
			log.G(ctx).WithField("mountpoint", m.Mountpoint).Debug("unmounted")
		}
	}
}

func run(o options) error {
	ctx := log.WithLogger(context.Background(), log.L)
	if o.root == "" || o.address == "" {
		return errors.New("--root and --address must not be empty")
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0700); err != nil {
		return err
	}
	// Mount points are matched against mountinfo, which has resolved paths.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return err
	}
	cfg, err := loadConfig(&o)
	if err != nil {
		return err
	}
	log.G(ctx).Debugf("effective configuration: %+v", cfg)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		log.G(ctx).WithError(err).Warn("/dev/fuse is unusable: layers will not be lazily mounted (containerd falls back to a full pull)")
	}

	sn, err := newSnapshotter(ctx, root, cfg)
	if err != nil {
		return err
	}

	l, err := listen(o.address)
	if err != nil {
		sn.Close()
		return err
	}
	defer os.Remove(o.address)

	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	errCh := make(chan error, 2)
	go func() { errCh <- srv.Serve(l) }()

	var metricsSrv *http.Server
	if o.metricsAddress != "" {
		ml, err := net.Listen("tcp", o.metricsAddress)
		if err != nil {
			srv.Stop()
			sn.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		metricsSrv = &http.Server{Handler: mux}
		go func() {
			if err := metricsSrv.Serve(ml); err != nil && err != http.ErrServerClosed {
				errCh <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}

	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	log.G(ctx).WithFields(logrus.Fields{
		"address": o.address, "root": root,
		"no_background_fetch": cfg.NoBackgroundFetch, "no_prefetch": cfg.NoPrefetch,
	}).Info("stargz-grpc serving")

	var runErr error
	select {
	case s := <-sigCh:
		log.G(ctx).Infof("got %v, shutting down", s)
	case err := <-errCh:
		runErr = err
	}

	// A second signal during shutdown exits at once.
	go func() {
		s := <-sigCh
		log.G(ctx).Warnf("got %v again, exiting without cleanup", s)
		os.Exit(1)
	}()

	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}

	if o.cleanupOnExit {
		// Unmounts every layer and removes all snapshot directories.
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("snapshotter close")
		}
	} else {
		unmountLayers(ctx, root)
	}
	log.G(ctx).Info("stargz-grpc stopped")
	return runErr
}
