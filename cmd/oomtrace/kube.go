// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/oomtrace/oomtrace/internal/kube/kubeapi"
)

// kubeClient returns a client of the API server: from kubeconfig, else the
// in-cluster config when running in a pod, else nil (standalone). It does
// not contact the server: an unreachable one is the cluster view's to
// report and retry.
func kubeClient(kubeconfig string) (*kubeapi.Client, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig == "none":
		return nil, nil
	case kubeconfig != "":
		if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("in-cluster API config: %w", err)
		}
	default:
		return nil, nil
	}
	cfg.UserAgent = "oomtrace/" + version
	c, err := kubeapi.New(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}
