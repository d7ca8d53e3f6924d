// Command kube-sim is the simulator's control plane in one binary.
//
// It dispatches on the name it was started under (filepath.Base(os.Args[0])), so
// one build symlinked as kube-apiserver, kube-controller-manager, kube-scheduler,
// etcd, kwok and kwokctl serves every component while each still runs as its own
// process. Sharing one binary saves five large links and most of the disk.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones, as upstream kube-controller-manager does

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	"sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwokctlcmd "sigs.k8s.io/kwok/pkg/kwokctl/cmd"
	_ "sigs.k8s.io/kwok/pkg/kwokctl/runtime/binary"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

var components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwok-controller", "kwokctl"}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	// `kube-sim <component> args…` also works, for when symlinks are not wanted.
	if name == "kube-sim" && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	switch name {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "etcd":
		etcdmain.Main(os.Args)
	case "kwok", "kwok-controller": // kwokctl installs kwok under the second name
		runKwok(kwokcmd.NewCommand)
	case "kwokctl":
		runKwok(kwokctlcmd.NewCommand)
	default:
		fmt.Fprintf(os.Stderr, "kube-sim: unknown component %q; run as one of %s\n", name, strings.Join(components, ", "))
		os.Exit(2)
	}
}

// runKwok mirrors kwok's own cmd/kwok and cmd/kwokctl mains.
func runKwok(newCommand func(context.Context) *cobra.Command) {
	// Kubernetes' verflag registers a non-bool --version on pflag.CommandLine at init,
	// which clashes with cobra's --version in kwok's commands: start from a clean set.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}

	ctx := signals.SetupSignalContext()
	ctx, logger := log.InitFlags(ctx, flagset)
	ctx, err := config.InitFlags(ctx, flagset)
	if err != nil {
		_, _ = os.Stderr.Write([]byte(flagset.FlagUsages()))
		logger.Error("Init config flags", "err", err)
		os.Exit(1)
	}
	command := newCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		os.Exit(1)
	}
}
