"""Tests of the Kubernetes rendering (airscale.deploy)."""
