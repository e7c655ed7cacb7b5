"""Running the spec elsewhere: Kubernetes rendering (`airscale render k8s`)."""
