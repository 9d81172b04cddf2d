"""A real Kubernetes API for tests: kube-apiserver and etcd built from the Go module proxy, started on loopback.

    python -m tools.k8s build            # build (cached) kube-apiserver, etcd and, when absent, kubectl
    python -m tools.k8s pin v1.37.2      # regenerate the wrapper go.mod files for another Kubernetes version
    python -m tools.k8s start            # start a throwaway cluster in the foreground, print its kubeconfig

See DEVELOPMENT.md ("Cluster harness").
"""
