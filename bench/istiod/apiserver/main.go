// mb-kube-apiserver: Kubernetes' kube-apiserver, built from the Go module proxy.
//
// k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to
// ./staging/src with replace lines, which `go install k8s.io/kubernetes/...@v1.X.Y`
// ignores (golang/go#32776). bench/istiod/build.py therefore builds this main package
// in a module of our own whose go.mod, generated at build time from the downloaded
// k8s.io/kubernetes go.mod, replaces each staging module with its published v0.X.Y
// (kubernetes/kubernetes#79384). The body is cmd/kube-apiserver/apiserver.go's.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
