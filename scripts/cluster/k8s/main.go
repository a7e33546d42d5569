// Command hyperkube is one binary for kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl: the four share most of their packages, so one link
// step instead of four saves several CPU-minutes of a cold build on a small machine.
//
// It runs the command named by the basename it was invoked as (a symlink), or by
// its first argument: `hyperkube kube-apiserver --help`.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as the real kube-apiserver and controller manager

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as the real mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as the real mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as the real mains
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
)

var servers = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	// The scheduler's constructor takes out-of-tree plugin registries; there are none.
	"kube-scheduler": func() *cobra.Command { return scheduler.NewSchedulerCommand() },
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, known := servers[name]; !known && name != "kubectl" {
		if len(os.Args) < 2 {
			usage(name)
		}
		name = os.Args[1]
		// The commands parse os.Args[1:], so drop the dispatch argument.
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	if name == "kubectl" {
		runKubectl()
		return
	}
	newCommand, known := servers[name]
	if !known {
		usage(name)
	}
	os.Exit(cli.Run(newCommand()))
}

// runKubectl is cmd/kubectl's main.
func runKubectl() {
	// kubectl sets its verbosity before parsing flags, so that plugin and
	// .kuberc handling during command construction log at the asked level.
	logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectl.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
}

func usage(name string) {
	fmt.Fprintf(os.Stderr, "%s: unknown command; use one of kube-apiserver, kube-controller-manager, kube-scheduler, kubectl\n", name)
	os.Exit(2)
}
