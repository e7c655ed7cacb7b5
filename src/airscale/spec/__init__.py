"""The spec: models, loading with clear errors, derived ports and the commented example."""

from airscale.spec.load import load_spec, parse_spec
from airscale.spec.models import Profile, QueueSpec, Spec
from airscale.spec.ports import Ports

__all__ = ["Ports", "Profile", "QueueSpec", "Spec", "load_spec", "parse_spec"]
