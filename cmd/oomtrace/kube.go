package main

import (
	"fmt"
	"os"

	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeClients are the API server's clients oomtrace uses.
type kubeClients struct {
	Host   string
	Core   corev1client.CoreV1Interface
	Events eventsv1client.EventsV1Interface
}

// kubeClient returns clients of the API server: from kubeconfig, else the
// in-cluster config when running in a pod, else nil (standalone). It does
// not contact the server: an unreachable one is the cluster view's to
// report and retry.
func kubeClient(kubeconfig string) (*kubeClients, error) {
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
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	ev, err := eventsv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	return &kubeClients{Host: cfg.Host, Core: core, Events: ev}, nil
}
