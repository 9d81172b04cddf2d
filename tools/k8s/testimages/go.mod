// The small static programs tools/k8s packs into images for the single-node cluster: the sandbox ("pause")
// program and lf-probe (an HTTP server and the client-side checks the cluster tests run inside pods).

module litefunctions.io/tools/k8s/testimages

go 1.26.0
